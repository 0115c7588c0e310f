"""Issue 13, "nothing lost, ever": run folders that cannot destroy each other, checkpoints only from finite
weights, failed saves that keep the previous checkpoint, resumes that refuse changed settings, no crash debris."""
import errno
import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from armvision.cli import main
from armvision.errors import ConfigError
from armvision.train import checkpoint as ck
from armvision.train.checkpoint import load_file
from armvision.train.config import PretrainConfig
from armvision.train.distributed import DistInfo
from armvision.train.engine import CheckpointSaveError, Trainer, TrainingDiverged
from armvision.train.optim import param_groups
from armvision.train.rundir import LOCK, claim_run_dir, process_identity

from .conftest import QUIET, TINY_PRETRAIN, Toy, fit

TOY = dict(num_workers=0, progress=False, log_every=1, tensorboard=False, epochs=1, warmup_epochs=0, blr=0.1,
           clip_grad=None)


def _toy_trainer(out, loss_fn=None, **cfg):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.zeros(64, dtype=torch.long))
    loss_fn = loss_fn or (lambda m, x, y: m(x).pow(2).mean())
    conf = PretrainConfig(output=str(out), **{**TOY, "batch_size": 8, **cfg})
    model = Toy()
    return Trainer(conf, DistInfo(), model, data, loss_fn, make_groups=lambda m: param_groups(m, 0.0)), model


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _one_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- 1. a run folder has an owner ------------------------------------------------------------------------------
def test_rerun_without_resume_is_refused_and_overwrite_moves_the_old_run_aside(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pretrain", *TINY_PRETRAIN, *QUIET, "--batch-size", "16", "--max-steps", "5", "--epochs", "1",
            "--output", str(out)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main([*args[:-2], "--max-steps", "2", "--output", str(out)]) == 2  # used to replace step 5 by step 2
    line = _one_line(capsys.readouterr().err)
    assert str(out) in line and "--resume" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # untouched
    assert main([*args, "--overwrite"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / "checkpoint-last.pth").read_bytes() == before["checkpoint-last.pth"]
    assert "moved the previous run" in capsys.readouterr().err


def test_a_second_live_run_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, caplog):
    import socket

    out = tmp_path / "run"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live "first run"
    try:
        (out / LOCK).write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "start": "earlier"}))
        trainer, _ = _toy_trainer(out, max_steps=2)
        with pytest.raises(ConfigError, match=f"in use by the running process {other.pid}"):
            fit(trainer)
        assert not (out / "log.jsonl").exists()  # the second run wrote nothing
    finally:
        other.kill()
        other.wait()
    with caplog.at_level(logging.WARNING, logger="armvision"):
        fit(_toy_trainer(out, max_steps=2)[0])  # now the lock is stale: taken over, with a notice
    assert f"stale lock of process {other.pid}" in caplog.text
    assert not (out / LOCK).exists()  # released at the end
    # a run holding the lock (here: the lock says our parent process, alive) keeps out a second claim
    held = claim_run_dir(tmp_path / "race", None, False)
    rec = json.loads((tmp_path / "race" / LOCK).read_text())
    (tmp_path / "race" / LOCK).write_text(json.dumps({**rec, "pid": os.getppid(),
                                                      "identity": process_identity(os.getppid())}))
    with pytest.raises(ConfigError, match=f"in use by the running process {os.getppid()}"):
        claim_run_dir(tmp_path / "race", "auto", False)
    held.release()
    assert (tmp_path / "race" / LOCK).exists()  # not ours any more: release leaves it


# ---- 2. checkpoints only from finite weights -------------------------------------------------------------------
def _inf_grad_at(trainer_model, step_calls, at):
    """Make the gradients infinite at loss call `at` (the loss itself stays finite: checked too late before)."""
    def hook(g):
        return g * float("inf") if step_calls["n"] == at else g
    trainer_model.lin.weight.register_hook(hook)


def test_weights_broken_by_an_update_are_never_saved(tmp_path, caplog):
    calls = {"n": 0}

    def loss_fn(m, x, y):
        calls["n"] += 1
        return m(x).pow(2).mean()

    trainer, model = _toy_trainer(tmp_path, loss_fn, save_every=1)
    _inf_grad_at(model, calls, 6)
    with pytest.raises(TrainingDiverged, match=r"weights are not finite.*step 6 .*holds step 5"):
        fit(trainer)
    ckpt = load_file(tmp_path / "checkpoint-last.pth")
    assert ckpt["step"] == 5  # used to be step 6, with NaN weights, and resuming NaNed again
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert all(torch.isfinite(t).all() for st in ckpt["optimizer"]["state"].values() for t in st.values())


def test_max_bad_steps_skips_non_finite_steps_then_stops(tmp_path, caplog):
    calls = {"n": 0}

    def loss_fn(m, x, y):
        calls["n"] += 1
        return m(x).pow(2).mean() * (float("nan") if calls["n"] == 3 else 1.0)

    trainer, model = _toy_trainer(tmp_path / "a", loss_fn, max_bad_steps=2)
    _inf_grad_at(model, calls, 5)
    with caplog.at_level(logging.WARNING, logger="armvision"):
        s = fit(trainer)
    assert s["step"] == 6 and "update skipped (2 of at most 2)" in caplog.text  # 8 batches, 2 skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())
    calls["n"] = 0
    trainer, model = _toy_trainer(tmp_path / "b", loss_fn, max_bad_steps=1)
    _inf_grad_at(model, calls, 5)
    with pytest.raises(TrainingDiverged, match="gradients are not finite at step 4"):
        fit(trainer)


# ---- 3. a failed save keeps the previous checkpoint ------------------------------------------------------------
def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    real_save, n = torch.save, {"saves": 0}

    def full_disk(obj, f, *a, **k):
        n["saves"] += 1
        if n["saves"] >= 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ck.torch, "save", full_disk)
    trainer, _ = _toy_trainer(tmp_path / "api", save_every=3)
    with pytest.raises(CheckpointSaveError, match=r"No space left on device.*step 3\) is kept"):
        fit(trainer)
    assert load_file(tmp_path / "api" / "checkpoint-last.pth")["step"] == 3
    assert not [p for p in (tmp_path / "api").iterdir() if ".tmp" in p.name]  # no debris
    n["saves"] = 0
    out = tmp_path / "cli"
    args = ["pretrain", *TINY_PRETRAIN, *QUIET, "--batch-size", "16", "--max-steps", "6", "--save-every", "2",
            "--output", str(out)]
    capsys.readouterr()
    assert main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "step 2" in line
    assert load_file(out / "checkpoint-last.pth")["step"] == 2


# ---- 5. crash debris --------------------------------------------------------------------------------------------
def test_stale_temp_files_of_dead_saves_are_removed_at_start(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    dead, live = _dead_pid(), os.getppid()
    (out / f".checkpoint-last.pth.tmp{dead}").write_bytes(b"x" * 1000)  # a killed save
    (out / f".checkpoint-best.pth.tmp{dead}").write_bytes(b"x")
    (out / f".armvision.lock.tmp{dead}").write_text("{}")  # killed while taking the lock
    (out / f".checkpoint-last.pth.tmp{live}").write_bytes(b"x")  # a live process's: not ours to remove
    (out / "notes.tmp123").write_text("not ours")
    with caplog.at_level(logging.WARNING, logger="armvision"):
        claim_run_dir(out, None, False).release()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f".checkpoint-last.pth.tmp{live}", "notes.tmp123"])
    assert f".checkpoint-last.pth.tmp{dead}" in caplog.text and "interrupted" in caplog.text


# ---- 7. a resume with other settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("change", [{"batch_size": 16}, {"seed": 3}, {"lr": 0.5}, {"blr": 0.2}])
def test_resume_with_changed_batch_size_seed_or_lr_is_refused_unless_forced(tmp_path, caplog, change):
    fit(_toy_trainer(tmp_path, max_steps=3, epochs=3)[0])
    key = next(iter(change))
    trainer, _ = _toy_trainer(tmp_path, max_steps=6, epochs=3, resume="auto", **change)  # more steps: allowed
    with pytest.raises(ConfigError, match=f"{key} .* -> {change[key]}.*--force"):
        fit(trainer)
    assert load_file(tmp_path / "checkpoint-last.pth")["step"] == 3
    with caplog.at_level(logging.WARNING, logger="armvision"):
        s = fit(_toy_trainer(tmp_path, max_steps=6, epochs=3, resume="auto", force=True, **change)[0])
    assert s["step"] == 6 and "changed settings" in caplog.text
    s = fit(_toy_trainer(tmp_path, max_steps=7, epochs=3, resume="auto", **change)[0])  # now the run's own
    assert s["step"] == 7


# ---- 6. the process-group timeout is the user's ----------------------------------------------------------------
def test_dist_timeout_reaches_init_process_group(monkeypatch):
    import datetime

    from armvision.train import distributed

    seen = {}
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, timeout: seen.update(
        backend=backend, timeout=timeout))
    monkeypatch.setattr(distributed, "watch_parent", lambda: seen.update(watch=True))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    info = distributed.init_distributed("cpu", timeout=12.5)
    assert seen == {"backend": "gloo", "timeout": datetime.timedelta(seconds=12.5), "watch": True}
    assert info.rank == 1 and info.world_size == 2
