"""The leak check around every test sees a forked edgeface left running, though it shows the forkserver's name."""

import os

from helpers import FIXTURES, Child, live_descendants, session_helper


def test_a_forked_daemon_is_no_session_helper(tmp_path):
    (tmp_path / "inbox").mkdir()
    daemon = Child(tmp_path, "watch", str(tmp_path / "inbox"), "--model", str(FIXTURES / "face_or_not.tflite"),
                   "--db", str(tmp_path / "log.db")).ready()  # fmt: skip
    try:
        assert not session_helper(daemon.process.pid)
        assert any(session_helper(pid) for pid in live_descendants(os.getpid()))  # the forkserver itself
    finally:
        daemon.stop()
