"""`pipeline` command line (see pipeline.cli); the console script's entry point is `main` here."""

import sys

from pipeline.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
