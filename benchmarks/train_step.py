"""Training-step and data-loading throughput (same as `armvision bench train-step`); e.g. `--quick`."""
import sys

from armvision.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "train-step", *sys.argv[1:]]))
