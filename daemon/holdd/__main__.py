"""`python -m holdd`: the same entry point as the `holdd` console script."""

from __future__ import annotations

import sys

from holdd.cli.main import main

sys.exit(main())
