"""Resuming a run: find and check the checkpoint, load the model weights, restore optimizer, scaler, EMA and RNGs.

A resume whose batch size, seed or learning rate differ from the checkpoint's run is refused unless `--force`.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from . import checkpoint as ckpt_io
from .distributed import DistInfo

log = logging.getLogger("armvision.train")

TRAINING_KEYS = ("model", "optimizer", "epoch", "batch_in_epoch", "step", "rng")  # what a resume restores
# Settings a resumed run must share with the checkpoint's run (else refused unless --force).
RESUME_MUST_MATCH = ("batch_size", "accum_iter", "seed", "blr", "lr")


def check_resume_config(old: dict, cfg: Any, path: Path, world_size: int, old_world: int) -> None:
    """Refuse (or, with --force, warn about) a resume whose batch size, seed or learning rate changed."""
    new = dataclasses.asdict(cfg)
    diffs = [f"{k} {old[k]} -> {new[k]}" for k in RESUME_MUST_MATCH if k in old and old[k] != new.get(k)]
    if old_world and world_size != old_world and "batch_size" in old:
        before, after = old["batch_size"] * old_world, cfg.batch_size * world_size
        if before != after:
            diffs.append(f"global batch {before} -> {after} ({old_world} -> {world_size} processes)")
    if not diffs:
        return
    what = "; ".join(diffs)
    if not getattr(cfg, "force", False):
        raise ConfigError(f"--resume {path}: the run was started with other settings ({what}); resume with the "
                          "original ones, or add --force to continue with the new ones")
    log.warning("--resume %s with changed settings (%s), as --force asks; the run will not match an "
                "uninterrupted one", path, what)


def load_resume(cfg: Any, output: Path, model: nn.Module, world_size: int) -> tuple[Optional[Path], Optional[dict]]:
    """(path, checkpoint) of --resume (None, None for a fresh run), its settings checked and its weights loaded
    into `model` (before the model is wrapped for DDP / FSDP)."""
    resume = ckpt_io.resume_path(cfg.resume, output)
    if resume is None:
        return None, None
    ckpt = ckpt_io.load_file(resume)
    lacking = [k for k in TRAINING_KEYS if k not in ckpt]
    if lacking:
        raise CheckpointError(f"--resume {resume} is not a training checkpoint (it has no {', '.join(lacking)}); "
                              "--resume continues a run's checkpoint-last.pth (start from weights with --init)")
    check_resume_config(ckpt.get("config") or {}, cfg, resume, world_size, ckpt.get("world_size", 0))
    why = misfit(ckpt["model"], model.state_dict())
    if why:
        raise CheckpointError(f"--resume {resume} does not fit this model: {why}; resume with the model options of "
                              "the original run (its config.yaml)")
    model.load_state_dict(ckpt["model"])
    return resume, ckpt


def misfit(saved: dict, own: dict) -> Optional[str]:
    """How a saved state dict does not fit a model's (tensors of other shapes, missing or extra ones), or None."""
    shapes = [f"{k} {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} in the model"
              for k, v in saved.items() if k in own and hasattr(v, "shape") and v.shape != own[k].shape]
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    parts = [f"{len(shapes)} tensor(s) differ in shape ({'; '.join(shapes[:2])}{'; ...' if len(shapes) > 2 else ''})"
             if shapes else "",
             f"{len(missing)} missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})" if missing else "",
             f"{len(extra)} unexpected ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})" if extra else ""]
    return ", ".join(p for p in parts if p) or None


def restore_optimizer(ckpt: dict, optimizer: torch.optim.Optimizer, wrapped: nn.Module, fsdp: bool) -> None:
    """Load the checkpoint's optimizer state (a full state dict, sharded again under FSDP)."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(wrapped, optimizer, ckpt["optimizer"], options=StateDictOptions(full_state_dict=True))
    else:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"the optimizer state of the checkpoint does not fit this run's ({e})") from None


def restore_rng(rngs: list, info: DistInfo, path: Path) -> None:
    """Each process takes its own RNG state back (rank 0's, with a warning, when the process count changed)."""
    if len(rngs) != info.world_size and info.is_main:
        log.warning("%s was written by %d process(es), this run has %d; RNG streams restart from rank 0's state",
                    path, len(rngs), info.world_size)
    ckpt_io.set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
