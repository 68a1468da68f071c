"""`python -m kubescribe.cli`: the `kubescribe` command."""

from __future__ import annotations

import sys

from kubescribe.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
