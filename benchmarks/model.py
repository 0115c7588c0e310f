"""Model throughput benchmark (same as `armvision bench model`); e.g. `python benchmarks/model.py --quick`."""
import sys

from armvision.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "model", *sys.argv[1:]]))
