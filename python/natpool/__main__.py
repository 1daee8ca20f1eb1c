"""``python -m natpool``: the ``natpool`` command."""

from natpool.cli import main

raise SystemExit(main())
