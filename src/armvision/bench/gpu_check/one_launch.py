"""`python -m armvision.bench.gpu_check.one_launch PRECISION` (config as JSON on stdin): the GPU check's ARM row on
the Triton backend, printed as one JSON line; models.one_launch_row starts it with ARMVISION_TRITON_DIRECTIONS=1."""
from __future__ import annotations

import json
import sys

from .models import model_run

if __name__ == "__main__":
    print(json.dumps(model_run("arm", sys.argv[1], json.load(sys.stdin), "triton")), flush=True)
