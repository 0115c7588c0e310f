"""Per-iteration linear warmup then half-cosine learning rate: timm's `CosineLRScheduler` runs it, `lr_at` is the
plain formula it is tested against (the two give the same learning rate at every step); `plan_warmup` decides how
many steps the warmup takes in a run of a given length.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import torch


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """lr for optimizer step `step` (0-based): linear from 0 over warmup, then cosine from base_lr to min_lr (the
    reference formula; training runs timm's scheduler, see `make_scheduler`)."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float = 0.0):
    """timm's CosineLRScheduler set up as `lr_at`: warmup from 0 to each group's lr over `warmup_steps`, then one
    cosine to `min_lr` ending at `total_steps`, per optimizer step (`step_update(step)`); a group's `lr_scale`
    (layer-wise decay) multiplies its lr, as `set_lr` does."""
    from timm.scheduler import CosineLRScheduler

    cosine = max(1, total_steps - warmup_steps)
    timm_log = logging.getLogger("timm.scheduler.cosine_lr")
    level = timm_log.level
    if cosine == 1:  # timm warns that a one-step cosine has no effect: true, and expected in a run that short
        timm_log.setLevel(logging.ERROR)
    try:
        return CosineLRScheduler(optimizer, t_initial=cosine, lr_min=min_lr, warmup_t=warmup_steps,
                                 warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)
    finally:
        timm_log.setLevel(level)


def group_lr(optimizer: torch.optim.Optimizer) -> float:
    """The unscaled learning rate the schedule set (the first group's lr over its lr_scale)."""
    g = optimizer.param_groups[0]
    return g["lr"] / g.get("lr_scale", 1.0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's lr to lr * its lr_scale (layer-wise decay)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


@dataclass
class Warmup:
    """Warmup steps of a run, with what a person should be told about them."""
    steps: int
    notes: list[str] = field(default_factory=list)  # what was adapted (info)
    warnings: list[str] = field(default_factory=list)  # what does not fit and was left as given


def plan_warmup(warmup_epochs: float, warmup_steps: Optional[int], epochs: int, steps_per_epoch: int,
                total: int) -> Warmup:
    """Warmup steps of a `total`-step run planned as `epochs` epochs of `steps_per_epoch` steps.

    `warmup_steps` (when given) is taken as it is. Otherwise the warmup lasts `warmup_epochs`; when --max-steps
    shortens the run and that warmup would take more than half of it, it is scaled with the run, keeping the
    fraction of the plan (warmup_epochs / epochs). A warmup that still takes more than half the run is warned
    about: the learning rate would rise for most of it and barely decay."""
    out = Warmup(0)
    if warmup_steps is not None:
        out.steps, given = min(total, warmup_steps), f"--warmup-steps {warmup_steps}"
    else:
        steps = round(warmup_epochs * steps_per_epoch)
        given = f"--warmup-epochs {warmup_epochs:g} ({steps} steps)"
        if total < epochs * steps_per_epoch and steps > total / 2:
            scaled = round(total * warmup_epochs / epochs)
            share = 100 * warmup_epochs / epochs
            out.notes.append(f"warmup {warmup_epochs:g} epochs ({steps} steps) would take most of the {total}-step "
                             f"run: scaled with --max-steps to {scaled} steps ({share:.3g} % of the run, as in the "
                             f"{epochs}-epoch plan)")
            steps = scaled
        out.steps = min(total, steps)
    if total and out.steps > total / 2:
        out.warnings.append(f"warmup takes {out.steps} of the {total} steps ({given}): the learning rate rises for "
                            f"{100 * out.steps / total:.0f} % of the run and barely decays; give a shorter "
                            f"--warmup-epochs or --warmup-steps")
    return out
