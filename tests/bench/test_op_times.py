"""benchmarks/op_times.py on a tiny model: it runs both modes and its split names the model's own kernels (or the
fallbacks' ops) and the matmuls by shape."""
import subprocess
import sys
from pathlib import Path

from armvision.ops import cpu_kernel

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "op_times.py"


def test_op_times_splits_a_forward_and_a_train_step():
    out = subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", "--img-size", "32", "--batch-size", "2",
                          "--mode", "forward", "train", "--warmup", "1", "--rows", "40"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.count("## tiny, 32 px, batch 2, fp32") == 2
    forward, train = out.split("## tiny")[1:]
    assert "untimed step" in forward and "matmuls" in forward and "mm (" in forward
    if cpu_kernel.load() is not None:  # the fused kernels run: the split names them
        assert "armvision::selective_scan_directions_fwd" in forward
        assert "armvision::selective_scan_directions_bwd" in train
        assert "armvision::causal_conv1d_directions_bwd" in train
