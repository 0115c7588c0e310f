"""Recipes that fit the run: the reference recipes are written for ImageNet (1.28 M images, 10^5 steps); on a few
hundred images and a few hundred steps some of their numbers stop making sense. `fit_recipe` looks at the run's
length and data once, before training, and says in one line what it changed or what does not fit:

- the EMA: decay d averages over about 1 / (1 - d) steps (0.99992: 12,500 steps, a tenth of the reference
  finetuning run). When that memory is longer than a tenth of the run, the EMA would still sit near the initial
  weights at the end (the issue's 36.7 % on 3 classes), so the decay is lowered to 1 - 10 / steps (`fit=False`:
  only a warning);
- the warmup (schedule.plan_warmup): scaled with --max-steps, a warning when it fills most of the run;
- the batch: an effective batch larger than half the images leaves one step per epoch and drops the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .schedule import Warmup


@dataclass
class RunFit:
    ema_decay: Optional[float]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def line(self, kind: str, images: int, total: int, lr: float) -> str:
        """The one line said before training (empty when the recipe fits as it is)."""
        parts = self.notes + self.warnings
        if not parts:
            return ""
        return f"{kind} recipe for {images:,} images and {total:,} steps (lr {lr:.3g}): " + "; ".join(parts)


def ema_memory(decay: float) -> float:
    """Steps an EMA of this decay averages over (its time constant, 1 / (1 - decay))."""
    return float("inf") if decay >= 1.0 else 1.0 / (1.0 - decay)


def fit_recipe(ema_decay: Optional[float], warmup: Warmup, images: int, effective_batch: int, total: int,
               fit: bool = True) -> RunFit:
    """What to change (with `fit`) or warn about for a run of `total` steps over `images` images."""
    out = RunFit(ema_decay, notes=list(warmup.notes), warnings=list(warmup.warnings))
    if ema_decay is not None and total > 0 and ema_memory(ema_decay) > total / 10:
        memory = ema_memory(ema_decay)
        shown = "all" if memory == float("inf") else f"{memory:,.0f}"
        if fit:
            out.ema_decay = max(0.0, 1.0 - 10.0 / total)
            out.notes.append(f"EMA decay {ema_decay:g} -> {out.ema_decay:.4g} (it averaged over {shown} steps, more "
                             f"than a tenth of the run; --no-fit-recipe keeps it)")
        else:
            out.warnings.append(f"the EMA (decay {ema_decay:g}) averages over {shown} steps, more than a tenth of "
                                f"the run: it will stay near the initial weights; lower --ema-decay")
    if images and effective_batch > images / 2:
        dropped = images % effective_batch
        out.warnings.append(f"the effective batch ({effective_batch}) is more than half of the {images:,} images: "
                            f"{images // effective_batch} step(s) per epoch, {dropped} image(s) left out of each; "
                            "lower --batch-size")
    return out
