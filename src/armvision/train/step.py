"""One optimisation step: micro-batches forward and backward, non-finite handling, clipping, the update, the EMA.

`OptimStep` is used by engine.Trainer once per micro-batch (`forward_backward`) and once after the last micro-batch
of a step (`update`). It guarantees that the weights it leaves are finite: a non-finite loss or gradient skips the
update (at most `--max-bad-steps` times, else it raises TrainingDiverged), and weights broken by an update raise
before any checkpoint could save them.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import ArmVisionError
from .distributed import DistInfo, all_reduce

log = logging.getLogger("armvision.train")

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDiverged(ArmVisionError):
    """The loss, the gradients or the weights became NaN or infinite."""


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of every tensor (local shards under FSDP) is finite, on every process.

    fp32 / fp64 tensors go through one fused multi-tensor norm (a NaN or inf anywhere makes its norm non-finite;
    one kernel launch per few hundred tensors, one sync); narrower dtypes, whose norm could overflow, element-wise."""
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
    local = [t.detach() for t in local if t.numel()]
    device = local[0].device if local else torch.device("cpu")
    bad = torch.zeros((), device=device)
    wide = [t for t in local if t.dtype in (torch.float32, torch.float64)]
    narrow = [t for t in local if t.dtype not in (torch.float32, torch.float64)]
    if wide:
        norms = torch.stack([n.float() for n in torch._foreach_norm(wide)])
        suspects = (~torch.isfinite(norms)).nonzero().flatten().tolist()  # rare: confirm element-wise (a norm of
        narrow = narrow + [wide[i] for i in suspects]  # huge but finite values can overflow)
    if narrow:
        bad = bad + torch.stack([~torch.isfinite(t).all() for t in narrow]).sum()
    return all_reduce(bad.float(), op="sum").item() == 0


class OptimStep:
    """Gradient accumulation over cfg.accum_iter micro-batches and the update that ends each step.

    model: the unwrapped model (its parameters are clipped, checked and averaged into `ema`); wrapped: the DDP /
    FSDP module the loss runs through. diverged(what, step, epoch) -> the TrainingDiverged to raise (it names the
    newest finite checkpoint)."""

    def __init__(self, cfg: Any, info: DistInfo, model: nn.Module, wrapped: nn.Module,
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, ema: Optional[nn.Module],
                 loss_fn: LossFn, autocast_dtype: Optional[torch.dtype],
                 diverged: Callable[[str, int, int], TrainingDiverged]):
        self.cfg, self.info, self.model, self.wrapped = cfg, info, model, wrapped
        self.optimizer, self.scaler, self.ema, self.loss_fn, self.diverged = optimizer, scaler, ema, loss_fn, diverged
        self.autocast = (torch.autocast(info.device.type, dtype=autocast_dtype) if autocast_dtype
                         else contextlib.nullcontext())
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.bad_steps = 0  # steps skipped so far (--max-bad-steps)
        self.reset()

    def reset(self) -> None:
        """Forget the micro-batches of an unfinished step (the loss so far and whether one was not finite)."""
        self.loss, self.bad = 0.0, False

    def forward_backward(self, images: torch.Tensor, targets: torch.Tensor, last: bool, step: int,
                         epoch: int) -> None:
        """Loss and gradients of one micro-batch (`last`: the step's last one, which syncs gradients under DDP).
        A non-finite loss marks the step bad (no backward), or raises when no more bad steps are allowed."""
        cfg, info = self.cfg, self.info
        images = images.to(info.device, non_blocking=True)
        targets = targets.to(info.device, non_blocking=True)
        sync = (self.wrapped.no_sync() if info.distributed and not last and hasattr(self.wrapped, "no_sync")
                else contextlib.nullcontext())
        with sync:
            with self.autocast:
                loss = self.loss_fn(self.wrapped, images, targets)
            value = all_reduce(loss.detach().float()).item()
            if not math.isfinite(value):
                self.bad = True
                if self.bad_steps >= cfg.max_bad_steps:
                    raise self.diverged(f"loss is {value}", step, epoch)
            else:
                self.scaler.scale(loss / cfg.accum_iter).backward()
        self.loss += value / cfg.accum_iter

    def update(self, step: int, epoch: int) -> Optional[float]:
        """End step `step` (1-based): clip, check, apply the update and the EMA -> the step's mean loss; or skip
        a non-finite step (None), keeping the weights as they are."""
        cfg = self.cfg
        if cfg.clip_grad and not self.bad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_grad)
        if not self.bad and cfg.max_bad_steps and not self.scaler.is_enabled():
            # (with fp16 the grad scaler already skips steps with inf/nan gradients)
            self.bad = not all_finite([p.grad for p in self.params if p.grad is not None])
            if self.bad and self.bad_steps >= cfg.max_bad_steps:
                raise self.diverged("the gradients are not finite", step, epoch)
        if self.bad:
            self._skip(step)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if not all_finite(self.params):  # finite loss, but the update broke the weights: never save them
            raise self.diverged("the weights are not finite after the update", step, epoch)
        if self.ema is not None:
            self.ema.update(self.model, step=step)
        loss = self.loss
        self.reset()
        return loss

    def _skip(self, step: int) -> None:
        self.bad_steps += 1
        if self.info.is_main:
            log.warning("step %d: non-finite loss or gradients; update skipped (%d of at most %d)",
                        step, self.bad_steps, self.cfg.max_bad_steps)
        self.optimizer.zero_grad(set_to_none=True)
        self.reset()
