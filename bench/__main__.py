"""``python -m bench``: run every benchmark and print the table."""

from __future__ import annotations

import sys

from bench.harness.runner import main

if __name__ == "__main__":
    sys.exit(main())
