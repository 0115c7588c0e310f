"""Exact resume after SIGKILL, and DDP with 2 CPU processes (gloo) against one process."""
import json
import signal

import pytest
import torch

from armvision.train.engine import KILL_ENV

from .conftest import QUIET, TINY_FINETUNE, TINY_PRETRAIN, run_cli


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "train"]


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
@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_sigkill_then_resume_gives_the_same_weights(tmp_path, kind):
    if kind == "pretrain":
        args = [kind, *TINY_PRETRAIN, "--blr", "1e-2"]
    else:  # everything random on: RandAugment, random erasing, mixup/cutmix, drop path, EMA
        args = [kind, *TINY_FINETUNE, "--drop-path", "0.1", "--ema-decay", "0.9", "--reprob", "0.5"]
    args += [*QUIET, "--batch-size", "16", "--epochs", "2", "--warmup-epochs", "0.05", "--max-steps", "8",
             "--save-every", "3", "--seed", "7"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_cli([*args, "--output", str(full)])
    p = run_cli([*args, "--output", str(cut)], env_extra={KILL_ENV: "5"}, check=False)
    assert p.returncode == -signal.SIGKILL
    assert torch.load(cut / "checkpoint-last.pth", weights_only=True)["step"] == 3  # steps 4, 5 were lost
    p = run_cli([*args, "--output", str(cut), "--resume", "auto"])
    assert "resumed from" in p.stdout and "step 3" in p.stdout
    a, _ = _assert_same_state(full / "checkpoint-last.pth", cut / "checkpoint-last.pth")
    assert a["step"] == 8
    assert _losses(full) == _losses(cut)  # the log of the resumed run has no duplicated steps
    assert (cut / "config.yaml").is_file()


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
    # FSDP (parameters sharded over the 2 processes): same curve, and exact resume after one rank is SIGKILLed
    fsdp = [*args, "--batch-size", "8", "--fsdp", "--save-every", "2", "--output", str(tmp_path / "fsdp")]
    p = run_cli(fsdp, torchrun=2, env_extra={KILL_ENV: "3"}, check=False)
    assert p.returncode != 0
    run_cli([*fsdp, "--resume", "auto"], torchrun=2)
    assert _losses(tmp_path / "fsdp") == pytest.approx(one, rel=1e-5, abs=1e-6)  # steps 4-5 after the resume
    ck = torch.load(tmp_path / "fsdp" / "checkpoint-last.pth", weights_only=True)
    assert ck["step"] == 5 and ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert all(isinstance(v, torch.Tensor) and v.shape == a.shape  # full (unsharded) tensors
               for (k, v), a in zip(ck["model"].items(), torch.load(tmp_path / "one" / "checkpoint-last.pth",
                                                                    weights_only=True)["model"].values()))
