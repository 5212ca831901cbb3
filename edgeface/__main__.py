"""Allow `python -m edgeface`."""

from edgeface.cli import main

raise SystemExit(main())
