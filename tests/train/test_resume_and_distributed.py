"""Exact resume after SIGKILLs from outside (random moments, mid-save, with and without data workers), and DDP
with 2 CPU processes (gloo) against one process; killed and frozen ranks, a killed launcher."""
import json
import os
import random
import signal
import subprocess
import time

import pytest
import torch

from .conftest import (QUIET, TINY_FINETUNE, TINY_PRETRAIN, cli_cmd, run_cli, start_and_kill, temp_files,
                       train_steps)


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "train"]


def _train_lines(out):
    return [(r["step"], r["loss"], r["epoch"]) for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if r["kind"] == "train"]


def _assert_same_state(a_path, b_path):
    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    assert a["step"] == b["step"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for pid, st in a["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(v, b["optimizer"]["state"][pid][k]), (pid, k)
    if a.get("ema") is not None:
        for k, v in a["ema"].items():
            assert torch.equal(v, b["ema"][k]), k
    return a, b


@pytest.mark.slow
@pytest.mark.parametrize("kind,workers", [("pretrain", 2), ("finetune", 0)])
def test_killed_from_outside_again_and_again_then_resumed_gives_the_same_run(tmp_path, kind, workers):
    """Issue 13: kills from outside at random moments, the first one in the middle of a checkpoint save; each
    restart takes over the dead run's lock and removes its temp file; the final weights, optimizer, EMA and the
    whole log.jsonl (log windows that straddle a checkpoint included) equal an uninterrupted run's."""
    if kind == "pretrain":
        args = [kind, *TINY_PRETRAIN, "--blr", "1e-2"]
    else:  # everything random on: RandAugment, random erasing, mixup/cutmix, drop path, EMA
        args = [kind, *TINY_FINETUNE, "--drop-path", "0.1", "--ema-decay", "0.9", "--reprob", "0.5"]
    args += [*QUIET, "--log-every", "3", "--batch-size", "16", "--epochs", "3", "--warmup-epochs", "0.05",
             "--max-steps", "24", "--save-every", "2", "--seed", "7"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_cli([*args, "--output", str(full)])
    rng = random.Random(kind)
    cut_args = [*args, "--num-workers", str(workers), "--output", str(cut), "--resume", "auto"]
    hows, texts = [], []
    for attempt in range(2):
        how, text = start_and_kill(cut_args, cut, rng, mid_save=attempt == 0)
        hows.append(how)
        texts.append(text)
        if how == "finished":
            break
    if hows[-1] != "finished":
        p = run_cli(cut_args)
        texts.append(p.stdout + p.stderr)
    killed = [h for h in hows if h != "finished"]
    assert len(killed) >= 2, hows  # the run really was interrupted several times
    joined = "\n".join(texts)
    assert "taking over the stale lock" in joined
    if "mid-save" in hows:  # the dead save's temp file was found and removed by the next start
        assert "left by a save that was interrupted" in joined
    a, _ = _assert_same_state(full / "checkpoint-last.pth", cut / "checkpoint-last.pth")
    assert a["step"] == 24
    assert _train_lines(full) == _train_lines(cut)  # no gaps, no duplicates, windows as an uninterrupted run's
    resumes = [r for r in map(json.loads, (cut / "log.jsonl").read_text().splitlines()) if r["kind"] == "resume"]
    assert resumes and all(r["from"].endswith("checkpoint-last.pth") for r in resumes)  # says where it resumed
    assert not temp_files(cut) and not (cut / ".armvision.lock").exists()
    assert (cut / "config.yaml").is_file()
    print(f"kills: {hows}")


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _rank_pids(launcher):
    """{rank: pid} of the torchrun workers of `launcher` (their RANK environment variable)."""
    ranks = {}
    for c in _children(launcher):
        try:
            env = dict(kv.split("=", 1) for kv in open(f"/proc/{c}/environ").read().split("\0") if "=" in kv)
        except OSError:
            continue
        if "RANK" in env and "armvision.cli" in open(f"/proc/{c}/cmdline").read():
            ranks[int(env["RANK"])] = c
    return ranks


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(cond, timeout, what):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_ddp_and_fsdp_match_one_process(tmp_path):
    args = ["pretrain", *TINY_PRETRAIN, *QUIET, "--blr", "1e-2", "--epochs", "1", "--warmup-epochs", "0.05",
            "--max-steps", "5"]
    run_cli([*args, "--batch-size", "16", "--output", str(tmp_path / "one")])
    p = run_cli([*args, "--batch-size", "8", "--output", str(tmp_path / "two")], torchrun=2)
    assert "effective batch 16" in p.stdout and "2 process(es)" in p.stdout
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 5
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)
    assert one[-1] < one[0]
    # rank 0 alone wrote the checkpoint and the log
    assert (tmp_path / "two" / "checkpoint-last.pth").is_file() and "process(es)" not in p.stderr
    # FSDP (parameters sharded over the 2 processes): same curve, and exact resume after rank 1 is SIGKILLed from
    # outside once a checkpoint exists
    out = tmp_path / "fsdp"
    fsdp = [*args, "--batch-size", "8", "--fsdp", "--save-every", "2", "--output", str(out)]
    launcher = subprocess.Popen(cli_cmd(fsdp, torchrun=2), env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: (out / "checkpoint-last.pth").exists() or launcher.poll() is not None, 240, "a checkpoint")
        ranks = _rank_pids(launcher.pid)
        if launcher.poll() is None and 1 in ranks:
            os.kill(ranks[1], signal.SIGKILL)
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    run_cli([*fsdp, "--resume", "auto"], torchrun=2)
    assert _losses(out) == pytest.approx(one, rel=1e-5, abs=1e-6)
    ck = torch.load(out / "checkpoint-last.pth", weights_only=True)
    assert ck["step"] == 5 and ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert all(isinstance(v, torch.Tensor) and v.shape == a.shape  # full (unsharded) tensors
               for (k, v), a in zip(ck["model"].items(), torch.load(tmp_path / "one" / "checkpoint-last.pth",
                                                                    weights_only=True)["model"].values()))


@pytest.mark.slow
def test_frozen_rank_is_reported_and_ranks_exit_when_the_launcher_dies(tmp_path):
    """Issue 13 (6): a SIGSTOPped rank leaves the other waiting in a collective: a watchdog says so after
    --stall-warning seconds; killing the torchrun launcher makes both ranks exit (they used to train on)."""
    out = tmp_path / "run"
    args = ["pretrain", *TINY_PRETRAIN, *QUIET, "--batch-size", "8", "--epochs", "1000", "--max-steps", "100000",
            "--save-every", "0", "--stall-warning", "2", "--dist-timeout", "600", "--output", str(out)]
    log = tmp_path / "launcher.txt"
    with open(log, "w") as f:
        launcher = subprocess.Popen(cli_cmd(args, torchrun=2), env={**os.environ, "OMP_NUM_THREADS": "1"},
                                    stdout=f, stderr=subprocess.STDOUT)
    ranks = {}
    try:
        _wait(lambda: len(train_steps(out)) >= 3, 240, "training steps")
        ranks = _rank_pids(launcher.pid)
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[1], signal.SIGSTOP)
        _wait(lambda: "no training step has finished" in log.read_text(), 30, "the stall warning")
        assert "rank 0" in log.read_text() and "--dist-timeout" in log.read_text()
        launcher.kill()  # SIGKILL: the launcher cannot stop its workers any more
        launcher.wait()
        os.kill(ranks[1], signal.SIGCONT)
        _wait(lambda: not any(_alive(p) for p in ranks.values()), 30, "the ranks to exit")
        assert "the launcher" in log.read_text()
    finally:
        for p in ranks.values():
            try:
                os.kill(p, signal.SIGCONT)
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if launcher.poll() is None:
            launcher.kill()
