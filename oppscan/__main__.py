"""`python -m oppscan`: the `oppscan` command."""

from oppscan.cli import main

raise SystemExit(main())
