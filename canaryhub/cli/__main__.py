"""`python -m canaryhub.cli …`, the same as the installed `canaryhub` command."""

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
