import os
import subprocess
import sys

import pytest
import torch

# Tiny models everywhere: 16-32 px, patch 8, width 16-32, depth 2.
TINY_PRETRAIN = ["--model", "tiny", "--embed-dim", "16", "--depth", "2", "--decoder-embed-dim", "16",
                 "--decoder-depth", "2", "--img-size", "16", "--patch-size", "8", "--cluster-size", "1"]
TINY_FINETUNE = ["--model", "tiny", "--embed-dim", "16", "--depth", "2", "--img-size", "16", "--patch-size", "8"]
QUIET = ["--num-workers", "0", "--no-progress", "--no-tensorboard", "--log-every", "1"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: the CPUs are shared, and oversubscribed OpenMP threads crawl."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_cli(args, env_extra=None, torchrun=0, check=True, timeout=300):
    """Run `armvision ARGS` (or under torchrun with N processes) in a subprocess; returns CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "armvision.cli", *args]
    else:
        cmd = [sys.executable, "-m", "armvision.cli", *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p
