"""Selective-scan benchmark (same as `armvision bench scan`); e.g. `python benchmarks/scan.py --quick`."""
import sys

from armvision.bench.scan import main

if __name__ == "__main__":
    sys.exit(main())
