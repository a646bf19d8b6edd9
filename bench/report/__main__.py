"""python -m bench.report RUN_DIR: the same as python -m bench report RUN_DIR."""

import sys

from bench.report.build import main

if __name__ == "__main__":
    sys.exit(main())
