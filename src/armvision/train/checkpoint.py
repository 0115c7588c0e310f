"""Checkpoints: atomic writes, safe loads (weights_only), and RNG states that survive weights_only."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import CheckpointError
from ..fileio import atomic_write

LAST, BEST = "checkpoint-last.pth", "checkpoint-best.pth"


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, then rename over `path` (never a half-written file).

    A failure raises fileio.FileWriteError (an OSError naming `path`); the previous file and no temp file remain."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def full_state_dicts(model: torch.nn.Module, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     fsdp: bool) -> tuple[dict, dict]:
    """(model, optimizer) state dicts as a single process would have them; collective under FSDP (gathered on
    the CPU)."""
    if not fsdp:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(wrapped, options=opts), get_optimizer_state_dict(wrapped, optimizer, options=opts)


def load_file(path: str | Path) -> dict:
    """Load one of our checkpoints with weights_only=True on the CPU."""
    from ..models.checkpoint import safe_torch_load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    ckpt = safe_torch_load(path)  # one line naming the file, in our words, when it cannot be read safely
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"checkpoint {path} has no 'model' state dict; is it an armvision training checkpoint?")
    return ckpt


def resume_path(resume: Optional[str], output: str | Path) -> Optional[Path]:
    """`--resume auto` -> OUTPUT/checkpoint-last.pth if present (else None); a path must exist."""
    if not resume:
        return None
    if resume == "auto":
        p = Path(output) / LAST
        return p if p.is_file() else None
    p = Path(resume)
    if not p.is_file():
        raise CheckpointError(f"--resume {resume}: file not found (use --resume auto to continue from "
                              f"{Path(output) / LAST} when it exists)")
    return p


def rng_state() -> dict:
    """torch (CPU and CUDA), numpy and python RNG states as tensors / lists / ints (weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": list(py_state[1]), "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of rng_state()."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
