import sys

from .paper.cli import main

if __name__ == "__main__":
    sys.exit(main())
