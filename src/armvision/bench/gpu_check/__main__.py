"""`python -m armvision.bench.gpu_check --output DIR [--dry-run] [...]`: the GPU check's command line
(armvision.cli.bench.gpu_check; also `armvision bench gpu-check`)."""
import sys

from armvision.cli.bench.gpu_check import main

sys.exit(main())
