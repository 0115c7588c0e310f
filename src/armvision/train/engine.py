"""The training loop shared by pretraining and finetuning.

One `Trainer` owns the device and precision, the (DDP / FSDP) wrapped model, AdamW with per-group lr scales, the
per-iteration warmup + cosine schedule, gradient accumulation and clipping, the EMA, logging, and checkpoints that
resume exactly: model, optimizer, scaler, EMA, step, position in the epoch's data order and every RNG state.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import ArmVisionError, CheckpointError, ConfigError
from . import checkpoint as ckpt_io
from .config import save_config
from .distributed import DistInfo, GlobalBatchSampler, all_reduce, barrier, gather_objects, wrap_model
from .logging import Progress, RunLogger
from .optim import build_optimizer, effective_lr
from .schedule import lr_at, set_lr

# Test hook: SIGKILL this process right after optimizer step N (and its checkpoint, if one is due).
KILL_ENV = "ARMVISION_TEST_KILL_AFTER_STEP"


class TrainingDiverged(ArmVisionError):
    """The loss became NaN or infinite."""


def resolve_precision(precision: str, device: torch.device) -> tuple[Optional[torch.dtype], bool]:
    """(autocast dtype or None for fp32, use a GradScaler?) for --precision on `device`."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        return torch.float16, True
    raise ConfigError(f"--precision {precision}: choose auto, fp32, bf16 or fp16")


def seed_everything(seed: int) -> None:
    import random

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
EvalFn = Callable[[nn.Module, Optional[nn.Module]], dict]


class Trainer:
    """Runs `cfg.epochs` epochs (or `cfg.max_steps` steps) of `loss_fn` over `train_set`.

    model: the unwrapped model (already on its device). make_groups(model) -> optimizer parameter groups (each
    may carry `lr_scale`). loss_fn(model, images, targets) -> scalar loss. evaluate(model, ema_model) -> metrics,
    called at the end of each epoch on every process (it must all-reduce its numbers). best_key: the metric whose
    maximum is kept in checkpoint-best.pth.
    """

    def __init__(self, cfg: Any, info: DistInfo, model: nn.Module, train_set: Dataset, loss_fn: LossFn,
                 make_groups: Callable[[nn.Module], list[dict]], evaluate: Optional[EvalFn] = None,
                 ema_decay: Optional[float] = None, model_config: Optional[dict] = None, kind: str = "train",
                 best_key: Optional[str] = None):
        self.cfg, self.info, self.model, self.train_set = cfg, info, model, train_set
        self.loss_fn, self.make_groups, self.evaluate = loss_fn, make_groups, evaluate
        self.ema_decay, self.model_config, self.kind, self.best_key = ema_decay, model_config, kind, best_key
        self.output = Path(cfg.output)
        self.autocast_dtype, use_scaler = resolve_precision(cfg.precision, info.device)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=use_scaler)
        self.best: Optional[float] = None
        self.last_metrics: dict = {}
        if cfg.fsdp and ema_decay is not None:
            raise ConfigError("--ema is not supported together with --fsdp; add --no-ema")

    # ---------------------------------------------------------------- checkpoints
    def _state(self, epoch: int, batch_in_epoch: int, step: int) -> Optional[dict]:
        """The checkpoint dict on the main process (None elsewhere); collective under FSDP."""
        rngs = gather_objects(ckpt_io.rng_state())
        if self.cfg.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                                 get_optimizer_state_dict)

            opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
            model_sd = get_model_state_dict(self.wrapped, options=opts)
            opt_sd = get_optimizer_state_dict(self.wrapped, self.optimizer, options=opts)
        else:
            model_sd, opt_sd = self.model.state_dict(), self.optimizer.state_dict()
        if not self.info.is_main:
            return None
        return {
            "model": model_sd, "optimizer": opt_sd, "scaler": self.scaler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step,
            "best": self.best, "metrics": self.last_metrics,
            "config": dataclasses.asdict(self.cfg), "model_config": self.model_config, "kind": self.kind,
            "rng": rngs, "world_size": self.info.world_size,
        }

    def save(self, epoch: int, batch_in_epoch: int, step: int, best: bool = False) -> None:
        state = self._state(epoch, batch_in_epoch, step)
        if state is not None:
            ckpt_io.save_atomic(state, self.output / ckpt_io.LAST)
            if best:
                ckpt_io.save_atomic(state, self.output / ckpt_io.BEST)
        barrier()

    def _restore(self, ckpt: dict, path: Path) -> None:
        if self.cfg.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.wrapped, self.optimizer, ckpt["optimizer"],
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
        self.best, self.last_metrics = ckpt.get("best"), ckpt.get("metrics") or {}
        rngs = ckpt["rng"]
        if len(rngs) != self.info.world_size:
            print(f"warning: {path} was written by {len(rngs)} process(es), this run has "
                  f"{self.info.world_size}; RNG streams restart from rank 0's state", flush=True)
        ckpt_io.set_rng_state(rngs[self.info.rank] if len(rngs) == self.info.world_size else rngs[0])

    # ---------------------------------------------------------------- training
    def fit(self) -> dict:
        cfg, info = self.cfg, self.info
        main = info.is_main
        seed_everything(cfg.seed + info.rank)
        sampler = GlobalBatchSampler(len(self.train_set), cfg.batch_size, info.world_size, info.rank, cfg.seed)
        loader = DataLoader(self.train_set, batch_sampler=sampler, num_workers=cfg.num_workers,
                            pin_memory=info.device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed))
        steps_per_epoch = len(sampler) // cfg.accum_iter
        if steps_per_epoch == 0:
            raise ConfigError(f"one epoch has {len(sampler)} batches, fewer than --accum-iter {cfg.accum_iter}")
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        warmup = min(total, round(cfg.warmup_epochs * steps_per_epoch))
        self.base_lr = effective_lr(cfg.blr, cfg.lr, cfg.batch_size, cfg.accum_iter, info.world_size)

        resume = ckpt_io.resume_path(cfg.resume, self.output)
        ckpt = ckpt_io.load_file(resume) if resume else None
        if ckpt is not None:
            try:
                self.model.load_state_dict(ckpt["model"])
            except RuntimeError as e:
                raise CheckpointError(f"--resume {resume} does not fit this model ({str(e).splitlines()[0]}); "
                                      "resume with the options of the original run") from None
        self.wrapped = wrap_model(self.model, info, cfg.fsdp)
        self.optimizer = build_optimizer(self.make_groups(self.model), self.base_lr, cfg.betas)
        self.ema = None
        if self.ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=self.ema_decay)
        epoch, batch_in_epoch, step = 0, 0, 0
        if ckpt is not None:
            self._restore(ckpt, resume)
            epoch, batch_in_epoch, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
            if main:
                print(f"resumed from {resume}: epoch {epoch}, step {step}", flush=True)
            del ckpt
        logger = RunLogger(self.output, enabled=main, tensorboard=cfg.tensorboard,
                           resume_step=step)  # a fresh run (step 0) starts a fresh log
        if main:
            save_config(cfg, self.output / "config.yaml")
            print(f"{self.kind}: {len(self.train_set)} images, {steps_per_epoch} steps/epoch, {total} steps, "
                  f"effective batch {cfg.batch_size * cfg.accum_iter * info.world_size}, lr {self.base_lr:.3g}, "
                  f"precision {self.autocast_dtype or torch.float32}, device {info.device}, "
                  f"{info.world_size} process(es)", flush=True)
        progress = Progress(total, initial=step, enabled=main and cfg.progress, every=cfg.log_every, desc=self.kind)
        kill_at = int(os.environ.get(KILL_ENV, "0"))
        autocast = (torch.autocast(info.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                    else contextlib.nullcontext())
        params = [p for p in self.model.parameters() if p.requires_grad]
        win_loss, win_n, win_t, win_imgs = 0.0, 0, time.time(), 0
        loss_avg = float("nan")
        try:
            while step < total and epoch < cfg.epochs:
                sampler.set_epoch(epoch, start=batch_in_epoch)
                if hasattr(self.train_set, "set_epoch"):
                    self.train_set.set_epoch(epoch)
                self.wrapped.train()
                step_loss = 0.0
                for i, (images, targets) in enumerate(loader, start=batch_in_epoch):
                    if i >= steps_per_epoch * cfg.accum_iter:
                        break
                    micro = i % cfg.accum_iter
                    last = micro == cfg.accum_iter - 1
                    if micro == 0:
                        lr = lr_at(step, total, warmup, self.base_lr, cfg.min_lr)
                        set_lr(self.optimizer, lr)
                    images = images.to(info.device, non_blocking=True)
                    targets = targets.to(info.device, non_blocking=True)
                    sync = (self.wrapped.no_sync() if info.distributed and not last and hasattr(self.wrapped, "no_sync")
                            else contextlib.nullcontext())
                    with sync:
                        with autocast:
                            loss = self.loss_fn(self.wrapped, images, targets)
                        loss_value = all_reduce(loss.detach().float()).item()
                        if not math.isfinite(loss_value):
                            raise TrainingDiverged(
                                f"loss is {loss_value} at step {step + 1} (epoch {epoch}); stopping. The last good "
                                f"checkpoint is kept in {self.output / ckpt_io.LAST} (if one was written); lower "
                                "--blr, add --clip-grad, or try --precision fp32")
                        self.scaler.scale(loss / cfg.accum_iter).backward()
                    step_loss += loss_value / cfg.accum_iter
                    if not last:
                        continue
                    if cfg.clip_grad:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    step += 1
                    batch_in_epoch = i + 1
                    if self.ema is not None:
                        self.ema.update(self.model, step=step)
                    win_loss += step_loss
                    win_n += 1
                    win_imgs += images.shape[0] * cfg.accum_iter * info.world_size
                    step_loss = 0.0
                    if win_n == cfg.log_every or step == total:
                        dt = max(1e-9, time.time() - win_t)
                        loss_avg = win_loss / win_n
                        logger.log({"epoch": round(step / steps_per_epoch, 4), "loss": loss_avg, "lr": lr,
                                    "img_per_s": win_imgs / dt}, step, prefix="train")
                        progress.update(step, loss=loss_avg, lr=lr, img_s=round(win_imgs / dt, 1))
                        win_loss, win_n, win_t, win_imgs = 0.0, 0, time.time(), 0
                    else:
                        progress.update(step, lr=lr)
                    if step >= total:
                        break
                    if cfg.save_every and step % cfg.save_every == 0:
                        self.save(epoch, batch_in_epoch, step)
                    if kill_at and step == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                epoch_done = batch_in_epoch >= steps_per_epoch * cfg.accum_iter
                if epoch_done:
                    epoch, batch_in_epoch = epoch + 1, 0
                due = step >= total or epoch % max(1, cfg.eval_every) == 0
                is_best = self._evaluate(epoch, step, logger, progress) if due else False
                self.save(epoch, batch_in_epoch, step, best=is_best)
        finally:
            progress.close()
            logger.close()
        if main:
            report = getattr(self.train_set, "report", None)
            if report is not None:
                print(report(), flush=True)
        return {"step": step, "epoch": epoch, "loss": loss_avg, "best": self.best, "metrics": self.last_metrics,
                "checkpoint": str(self.output / ckpt_io.LAST)}

    def _evaluate(self, epoch: int, step: int, logger: RunLogger, progress: Progress) -> bool:
        """Evaluate (if an evaluate function was given), log, and say whether this is the best so far."""
        if self.evaluate is None:
            return False
        self.model.eval()
        with torch.no_grad():
            metrics = self.evaluate(self.model, self.ema.module if self.ema is not None else None)
        self.model.train()
        self.last_metrics = {"epoch": epoch, "step": step, **metrics}
        logger.log({"epoch": epoch, **metrics}, step, prefix="val")
        progress.write(f"{self.kind} eval epoch {epoch} step {step}: "
                       + " ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        value = metrics.get(self.best_key) if self.best_key else None
        if value is not None and (self.best is None or value > self.best):
            self.best = float(value)
            return True
        return False
