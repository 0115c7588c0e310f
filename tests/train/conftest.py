import os
import subprocess
import sys

import pytest
import torch
from torch import nn

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


# ---- fault injection from outside the process (the engine has no test hooks) --------------------------------------
def cli_cmd(args, torchrun=0):
    if torchrun:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
                "-m", "armvision.cli", *args]
    return [sys.executable, "-m", "armvision.cli", *args]


def train_steps(out):
    """Steps of the "train" lines of OUT/log.jsonl (a torn last line is ignored)."""
    import json

    steps = []
    try:
        lines = (out / "log.jsonl").read_text().splitlines()
    except OSError:
        return steps
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("kind") == "train":
            steps.append(rec["step"])
    return steps


def temp_files(out):
    import re

    return [p for p in out.iterdir() if re.match(r"^\.checkpoint-.*\.pth\.tmp\d+$", p.name)] if out.is_dir() else []


def start_and_kill(args, out, rng, mid_save, timeout=120):
    """Start `armvision ARGS` (which writes to OUT), and SIGKILL it from outside once it has made progress:
    `mid_save` -> the moment a checkpoint temp file appears (a save in progress), else after a random delay.

    Returns (how: "finished" | "mid-save" | "after-save" | "random", stdout+stderr text)."""
    import signal
    import subprocess
    import tempfile
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as log:
        p = subprocess.Popen(cli_cmd(args), env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        before = len(train_steps(out))
        deadline = time.time() + timeout
        how = "finished"
        try:
            while p.poll() is None and len(train_steps(out)) <= before:  # wait for one new step
                if time.time() > deadline:
                    raise AssertionError("no progress")
                time.sleep(0.01)
            if mid_save:
                while p.poll() is None and time.time() < deadline:
                    if temp_files(out):
                        p.send_signal(signal.SIGKILL)
                        how = "mid-save"
                        break
            else:
                time.sleep(rng.uniform(0.0, 0.2))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    how = "random"
            p.wait(timeout=timeout)
            if how == "mid-save" and not temp_files(out):
                how = "after-save"  # the rename won the race: the kill came just after the save
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        log.seek(0)
        text = log.read()
    if how == "finished":
        assert p.returncode == 0, text[-3000:]
    else:
        assert p.returncode == -signal.SIGKILL, (p.returncode, text[-3000:])
    return how, text


def fit(trainer):
    """Run a Trainer as train_pretrain / train_finetune do: inside its claimed output folder (`run_folder`)."""
    from armvision.train.engine import run_folder

    with run_folder(trainer.cfg, trainer.info):
        return trainer.fit()


class Toy(nn.Module):
    """A one-layer model for engine tests that need no ARM model."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x):
        return self.lin(x)
