"""``python -m natpool``: the ``natpool`` command."""

from natpool.apps.cli import main

raise SystemExit(main())
