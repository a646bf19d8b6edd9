"""python -m bench.load: the load generator alone, against any echo server (see bench/load/cli.py)."""

import sys

from bench.load import main

if __name__ == "__main__":  # a "spawn" worker re-imports this module as __mp_main__: no second run
    sys.exit(main())
