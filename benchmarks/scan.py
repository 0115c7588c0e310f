"""Selective-scan benchmark (same as `armvision bench scan`); e.g. `python benchmarks/scan.py --quick`."""
import sys

from armvision.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "scan", *sys.argv[1:]]))
