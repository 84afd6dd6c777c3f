"""python -m app.cli: the `workhorse` command."""

from app.cli import main

raise SystemExit(main())
