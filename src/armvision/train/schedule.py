"""Per-iteration linear warmup then half-cosine learning rate."""
from __future__ import annotations

import math

import torch


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """lr for optimizer step `step` (0-based): linear from 0 over warmup, then cosine from base_lr to min_lr."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's lr to lr * its lr_scale (layer-wise decay)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
