"""The `edgeface` command (`python -m edgeface`, and the console script).

SIGHUP is held before the runtime is imported (see `edgeface.hangup`), so these lines come first.
"""

from edgeface import hangup

hangup.hold()

from edgeface.cli import main  # noqa: E402 - after hold(): this import takes most of a second on a Pi

if __name__ == "__main__":
    raise SystemExit(main())
