"""benchmarks/profile_arm.py on a tiny model, with each timer: it runs both modes and its split names the model's
own kernels and the matmuls (by shape, with the op timer)."""
import subprocess
import sys
from pathlib import Path

import pytest

from armvision.ops import cpu_kernel

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "profile_arm.py"


@pytest.mark.parametrize("timer", ["ops", "profiler"])
def test_profile_splits_a_forward_and_a_train_step(timer):
    out = subprocess.run([sys.executable, str(SCRIPT), "--timer", timer, "--size", "tiny", "--img-size", "32",
                          "--batch-size", "2", "--mode", "forward", "train", "--rows", "60"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.count("## tiny, 32 px, batch 2, fp32") == 2
    forward, train = out.split("## tiny")[1:]
    assert "matmuls" in forward and "aten::mm" in forward
    if timer == "ops":
        assert "untimed step" in forward and "aten::mm (" in forward
    if cpu_kernel.load() is not None:  # the fused kernels run: the split names them
        assert "armvision::selective_scan_directions_fwd" in forward
        assert "armvision::selective_scan_directions_bwd" in train
        assert "armvision::causal_conv1d_directions_bwd" in train
