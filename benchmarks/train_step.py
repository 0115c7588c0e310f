"""Training-step and data-loading throughput (same as `armvision bench train-step`); e.g. `--quick`."""
import sys

from armvision.bench.train_step import main

if __name__ == "__main__":
    sys.exit(main())
