"""The training loop shared by pretraining and finetuning.

One `Trainer` owns the device and precision, the (DDP / FSDP) wrapped model, AdamW with per-group lr scales, the
per-iteration warmup + cosine schedule, gradient accumulation and clipping, the EMA, logging, and checkpoints that
resume exactly: model, optimizer, scaler, EMA, step, position in the epoch's data order, the partial logging window
and every RNG state.

What it guarantees when things go wrong: a checkpoint is written only from finite weights (checked after each
optimizer step, before any save), so a non-finite stop keeps the newest finite checkpoint and says which step it
holds; `--max-bad-steps N` skips up to N steps whose loss or gradients are not finite; a failed save (disk full,
read-only) leaves the previous checkpoint in place and stops with one line; a resume whose batch size, seed or
learning rate differ from the checkpoint's run is refused unless `--force`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
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
from .distributed import (DistInfo, GlobalBatchSampler, StallWatchdog, all_reduce, barrier, gather_objects,
                          wrap_model)
from .logging import Progress, RunLogger
from .optim import build_optimizer, effective_lr
from .rundir import RunLock, claim_run_dir
from .schedule import lr_at, set_lr

log = logging.getLogger("armvision.train")

# Settings a resumed run must share with the checkpoint's run (else refused unless --force).
RESUME_MUST_MATCH = ("batch_size", "accum_iter", "seed", "blr", "lr")


class TrainingDiverged(ArmVisionError):
    """The loss, the gradients or the weights became NaN or infinite."""


class CheckpointSaveError(ArmVisionError):
    """A checkpoint could not be written (disk full, read-only, ...); the previous one is kept."""


@contextlib.contextmanager
def run_folder(cfg: Any, info: DistInfo):
    """Own cfg.output for the duration of a run (main process): see rundir.claim_run_dir. Other processes wait."""
    lock: Optional[RunLock] = None
    ckpt_io.resume_path(cfg.resume, cfg.output)  # a --resume PATH that does not exist fails before anything
    if info.is_main:
        lock = claim_run_dir(cfg.output, cfg.resume, cfg.overwrite)
    try:
        barrier()
        yield lock
    finally:
        if lock is not None:
            lock.release()


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


def _all_finite(tensors: list[torch.Tensor]) -> bool:
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
        """Write checkpoint-last.pth (and -best) atomically; only called with finite weights.

        An OSError (disk full, read-only folder, ...) becomes CheckpointSaveError: the previous checkpoint is left
        in place (the temp file is removed) and the run stops with one line."""
        state = self._state(epoch, batch_in_epoch, step)
        failed: Optional[str] = None
        if state is not None:
            state["log_window"] = dict(self.window)
            for name, wanted in ((ckpt_io.LAST, True), (ckpt_io.BEST, best)):
                if not wanted:
                    continue
                try:
                    ckpt_io.save_atomic(state, self.output / name)
                except OSError as e:
                    kept = (f"the previous one (step {self.saved_step}) is kept" if self.saved_step is not None
                            else "no earlier checkpoint exists")
                    failed = (f"cannot write {self.output / name} at step {step} ({e.strerror or e}); {kept}. "
                              "Free space or fix the folder, then --resume auto")
                    break
                if name == ckpt_io.LAST:
                    self.saved_step = step
        if self.info.distributed:  # every process stops together
            failed_any = all_reduce(torch.tensor(1.0 if failed else 0.0, device=self.info.device), op="sum")
            if failed_any.item() and failed is None:
                failed = "rank 0 could not write a checkpoint; stopping"
        barrier()
        if failed:
            raise CheckpointSaveError(failed)

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
        if len(rngs) != self.info.world_size and self.info.is_main:
            log.warning("%s was written by %d process(es), this run has %d; RNG streams restart from rank 0's state",
                        path, len(rngs), self.info.world_size)
        ckpt_io.set_rng_state(rngs[self.info.rank] if len(rngs) == self.info.world_size else rngs[0])

    def _diverged(self, what: str, step: int, epoch: int) -> TrainingDiverged:
        if self.saved_step is not None:
            kept = f"the newest finite checkpoint, {self.output / ckpt_io.LAST}, holds step {self.saved_step}"
        else:
            kept = "no checkpoint was written before it"
        return TrainingDiverged(f"{what} at step {step} (epoch {epoch}); stopping. {kept}; lower --blr / --lr, "
                                "add --clip-grad, try --precision fp32, or skip such steps with --max-bad-steps")

    # ---------------------------------------------------------------- training
    def fit(self, claim: bool = True) -> dict:
        """Train. claim: take cfg.output first (`run_folder`); False when the caller already holds it (the
        pretrain / finetune entry points claim it before building the data, so that a bad folder fails first)."""
        if claim:
            with run_folder(self.cfg, self.info):
                return self._fit()
        return self._fit()

    def _fit(self) -> dict:
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
            check_resume_config(ckpt.get("config") or {}, cfg, resume, info.world_size, ckpt.get("world_size", 0))
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
        # the logging window: losses of the steps since the last log line (saved in checkpoints, so that a
        # resumed run writes exactly the lines of an uninterrupted one)
        self.window = {"loss": 0.0, "n": 0}
        self.saved_step: Optional[int] = None
        if ckpt is not None:
            self._restore(ckpt, resume)
            epoch, batch_in_epoch, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
            self.window = dict(ckpt.get("log_window") or self.window)
            self.saved_step = step
            if main:
                log.info("resumed from %s: epoch %d, step %d", resume, epoch, step)
            del ckpt
        logger = RunLogger(self.output, enabled=main, tensorboard=cfg.tensorboard,
                           resume_step=step)  # a fresh run (step 0) starts a fresh log
        if main:
            if resume is not None:
                logger.log({"from": str(resume)}, step, prefix="resume")
            save_config(cfg, self.output / "config.yaml")
            log.info(f"{self.kind}: {len(self.train_set)} images, {steps_per_epoch} steps/epoch, {total} steps, "
                     f"effective batch {cfg.batch_size * cfg.accum_iter * info.world_size}, lr {self.base_lr:.3g}, "
                     f"precision {self.autocast_dtype or torch.float32}, device {info.device}, "
                     f"{info.world_size} process(es)")
        progress = Progress(total, initial=step, enabled=main and cfg.progress, every=cfg.log_every, desc=self.kind)
        watchdog = StallWatchdog(cfg.stall_warning, info.rank, cfg.dist_timeout) if info.distributed else None
        autocast = (torch.autocast(info.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                    else contextlib.nullcontext())
        params = [p for p in self.model.parameters() if p.requires_grad]
        win_t, win_imgs = time.time(), 0
        loss_avg = float("nan")
        bad_steps = 0
        try:
            while step < total and epoch < cfg.epochs:
                sampler.set_epoch(epoch, start=batch_in_epoch)
                if hasattr(self.train_set, "set_epoch"):
                    self.train_set.set_epoch(epoch)
                self.wrapped.train()
                step_loss, step_bad = 0.0, False
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
                            step_bad = True
                            if bad_steps >= cfg.max_bad_steps:
                                raise self._diverged(f"loss is {loss_value}", step + 1, epoch)
                        else:
                            self.scaler.scale(loss / cfg.accum_iter).backward()
                    step_loss += loss_value / cfg.accum_iter
                    if not last:
                        continue
                    if cfg.clip_grad and not step_bad:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                    if not step_bad and cfg.max_bad_steps and not self.scaler.is_enabled():
                        # (with fp16 the grad scaler already skips steps with inf/nan gradients)
                        grads = [p.grad for p in params if p.grad is not None]
                        step_bad = not _all_finite(grads)
                        if step_bad and bad_steps >= cfg.max_bad_steps:
                            raise self._diverged("the gradients are not finite", step + 1, epoch)
                    if step_bad:  # skip this update (--max-bad-steps), keep the weights as they are
                        bad_steps += 1
                        if main:
                            log.warning("step %d: non-finite loss or gradients; update skipped (%d of at most %d)",
                                        step + 1, bad_steps, cfg.max_bad_steps)
                        self.optimizer.zero_grad(set_to_none=True)
                        step_loss, step_bad = 0.0, False
                        batch_in_epoch = i + 1
                        continue
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    if not _all_finite(params):  # finite loss, but the update broke the weights: never save them
                        raise self._diverged("the weights are not finite after the update", step + 1, epoch)
                    step += 1
                    batch_in_epoch = i + 1
                    if watchdog is not None:
                        watchdog.beat(step)
                    if self.ema is not None:
                        self.ema.update(self.model, step=step)
                    self.window["loss"] += step_loss
                    self.window["n"] += 1
                    win_imgs += images.shape[0] * cfg.accum_iter * info.world_size
                    step_loss = 0.0
                    if step % cfg.log_every == 0 or step == total:
                        dt = max(1e-9, time.time() - win_t)
                        loss_avg = self.window["loss"] / max(1, self.window["n"])
                        logger.log({"epoch": round(step / steps_per_epoch, 4), "loss": loss_avg, "lr": lr,
                                    "img_per_s": win_imgs / dt}, step, prefix="train")
                        progress.update(step, loss=loss_avg, lr=lr, img_s=round(win_imgs / dt, 1))
                        self.window = {"loss": 0.0, "n": 0}
                        win_t, win_imgs = time.time(), 0
                    else:
                        progress.update(step, lr=lr)
                    if step >= total:
                        break
                    if cfg.save_every and step % cfg.save_every == 0:
                        self.save(epoch, batch_in_epoch, step)
                epoch_done = batch_in_epoch >= steps_per_epoch * cfg.accum_iter
                if epoch_done:
                    epoch, batch_in_epoch = epoch + 1, 0
                due = step >= total or epoch % max(1, cfg.eval_every) == 0
                is_best = self._evaluate(epoch, step, logger, progress) if due else False
                self.save(epoch, batch_in_epoch, step, best=is_best)
        finally:
            if watchdog is not None:
                watchdog.close()
            progress.close()
            logger.close()
        if main:
            report = getattr(self.train_set, "report", None)
            if report is not None:
                log.info(report())
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
