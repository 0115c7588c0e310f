"""`python -m armvision.bench.gpu_check.one_launch PRECISION` (config as JSON on stdin): the GPU check's ARM row on
the Triton backend, printed as one JSON line with what the child read from ARMVISION_TRITON_DIRECTIONS
(models.one_launch_row starts it with the variable set to 1)."""
from __future__ import annotations

import json
import sys

from ... import env
from .models import model_run

if __name__ == "__main__":
    row = model_run("arm", sys.argv[1], json.load(sys.stdin), "triton")
    print(json.dumps({**row, "triton_directions": env.triton_directions()}), flush=True)
