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

The parts: `Trainer._setup_*` (data order and schedule; resume, wrapping, optimizer, EMA), `step.OptimStep` (one
optimisation step), `logging.TrainLog` (the train lines), `Trainer._evaluate` and `Trainer.save` (checkpoints);
`resume` checks and restores a checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..data.loading import resolve_num_workers
from ..errors import ArmVisionError, ConfigError
from ..eval.evaluate import autocast_dtype
from . import checkpoint as ckpt_io
from .config import save_config
from .distributed import (DistInfo, GlobalBatchSampler, StallWatchdog, StreamEpochs, all_reduce, barrier,
                          gather_objects, wrap_model)
from .logging import Progress, RunLogger, TrainLog
from .optim import build_optimizer, effective_lr
from .resume import RESUME_MUST_MATCH, check_resume_config, load_resume, restore_optimizer, restore_rng
from .rundir import RunLock, claim_run_dir
from .recipe import fit_recipe
from .schedule import Warmup, group_lr, make_scheduler, plan_warmup
from .step import LossFn, OptimStep, TrainingDiverged

__all__ = ["Trainer", "TrainingDiverged", "CheckpointSaveError", "run_folder", "resolve_precision",
           "seed_everything", "check_resume_config", "RESUME_MUST_MATCH"]

log = logging.getLogger("armvision.train")


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


def resolve_precision(precision: str, device: torch.device) -> tuple[Optional[torch.dtype], bool]:
    """(autocast dtype or None for fp32, use a GradScaler?) for --precision on `device` (eval's rule: one place)."""
    return autocast_dtype(precision, device)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python's random."""
    import random

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


EvalFn = Callable[[nn.Module, Optional[nn.Module]], dict]


@dataclasses.dataclass
class Schedule:
    """How long the run is: optimizer steps per epoch, in all, of warmup (and what to say about it); the peak lr."""
    steps_per_epoch: int
    total: int
    warmup: int
    base_lr: float
    warmup_plan: Optional[Warmup] = None


@dataclasses.dataclass
class Position:
    """Where the run is: epoch, batches of it consumed (on each process), optimizer steps done."""
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0


class Trainer:
    """Runs `cfg.epochs` epochs (or `cfg.max_steps` steps) of `loss_fn` over `train_set`.

    model: the unwrapped model (already on its device). make_groups(model) -> optimizer parameter groups (each
    may carry `lr_scale`). loss_fn(model, images, targets) -> scalar loss. evaluate(model, ema_model) -> metrics,
    called at the end of each epoch on every process (it must all-reduce its numbers). best_key: the metric whose
    maximum is kept in checkpoint-best.pth. label_names: the class names (index = class id), stored in every
    checkpoint under "label_names".
    """

    def __init__(self, cfg: Any, info: DistInfo, model: nn.Module, train_set: Dataset, loss_fn: LossFn,
                 make_groups: Callable[[nn.Module], list[dict]], evaluate: Optional[EvalFn] = None,
                 ema_decay: Optional[float] = None, model_config: Optional[dict] = None, kind: str = "train",
                 best_key: Optional[str] = None, label_names: Optional[list[str]] = None):
        self.cfg, self.info, self.model, self.train_set = cfg, info, model, train_set
        self.label_names = label_names
        self.loss_fn, self.make_groups, self.evaluate = loss_fn, make_groups, evaluate
        self.ema_decay, self.model_config, self.kind, self.best_key = ema_decay, model_config, kind, best_key
        self.output = Path(cfg.output)
        self.autocast_dtype, use_scaler = resolve_precision(cfg.precision, info.device)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=use_scaler)
        self.best: Optional[float] = None
        self.last_metrics: dict = {}
        self.saved_step: Optional[int] = None  # the step held by checkpoint-last.pth
        if cfg.fsdp and ema_decay is not None:
            raise ConfigError("--ema is not supported together with --fsdp; add --no-ema")

    # ---------------------------------------------------------------- training
    def fit(self) -> dict:
        """Train, in cfg.output, which the caller holds (`run_folder`: the pretrain / finetune entry points claim it
        before they build the data, so that a bad folder fails first)."""
        cfg, info = self.cfg, self.info
        seed_everything(cfg.seed + info.rank)
        sampler, loader, sched = self._setup_data()
        self.fit = fit_recipe(self.ema_decay, sched.warmup_plan, len(self.train_set),
                              cfg.batch_size * cfg.accum_iter * info.world_size, sched.total, cfg.fit_recipe)
        resume, pos, window = self._setup_state(sched)
        logger = RunLogger(self.output, enabled=info.is_main, tensorboard=cfg.tensorboard,
                           resume_step=pos.step)  # a fresh run (step 0) starts a fresh log
        if info.is_main:
            self._announce(resume, sched, logger, pos.step)
        progress = Progress(sched.total, initial=pos.step, enabled=info.is_main and cfg.progress, every=cfg.log_every,
                            desc=self.kind)
        self.train_log = TrainLog(logger, progress, cfg.log_every, sched.total, sched.steps_per_epoch, window)
        watchdog = StallWatchdog(cfg.stall_warning, info.rank, cfg.dist_timeout) if info.distributed else None
        try:
            while pos.step < sched.total and pos.epoch < cfg.epochs:
                self._run_epoch(loader, sampler, sched, pos, watchdog)
                if pos.batch_in_epoch >= sched.steps_per_epoch * cfg.accum_iter:  # the epoch is done
                    pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
                due = pos.step >= sched.total or pos.epoch % max(1, cfg.eval_every) == 0
                is_best = self._evaluate(pos.epoch, pos.step, logger, progress) if due else False
                self.save(pos.epoch, pos.batch_in_epoch, pos.step, best=is_best)
        finally:
            if watchdog is not None:
                watchdog.close()
            progress.close()
            logger.close()
        report = getattr(self.train_set, "report", None)
        if info.is_main and report is not None:
            log.info(report())
        return {"step": pos.step, "epoch": pos.epoch, "loss": self.train_log.loss_avg, "best": self.best,
                "metrics": self.last_metrics, "checkpoint": str(self.output / ckpt_io.LAST)}

    def _setup_data(self) -> tuple[GlobalBatchSampler | StreamEpochs, DataLoader, Schedule]:
        """The sampler (the global data order, resumable mid-epoch), the loader and the schedule."""
        cfg, info = self.cfg, self.info
        workers = resolve_num_workers(cfg.num_workers)
        if isinstance(self.train_set, IterableDataset):  # a stream shards itself over processes and workers
            sampler = StreamEpochs(self.train_set, cfg.batch_size, info.world_size)
            loader = DataLoader(self.train_set, batch_size=cfg.batch_size, num_workers=workers, drop_last=True,
                                pin_memory=info.device.type == "cuda")
        else:
            sampler = GlobalBatchSampler(len(self.train_set), cfg.batch_size, info.world_size, info.rank, cfg.seed)
            loader = DataLoader(self.train_set, batch_sampler=sampler, num_workers=workers,
                                pin_memory=info.device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.seed))
        steps_per_epoch = len(sampler) // cfg.accum_iter
        if steps_per_epoch == 0:
            raise ConfigError(f"one epoch has {len(sampler)} batches, fewer than --accum-iter {cfg.accum_iter}")
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        warmup = plan_warmup(cfg.warmup_epochs, cfg.warmup_steps, cfg.epochs, steps_per_epoch, total)
        base_lr = effective_lr(cfg.blr, cfg.lr, cfg.batch_size, cfg.accum_iter, info.world_size)
        return sampler, loader, Schedule(steps_per_epoch, total, warmup.steps, base_lr, warmup)

    def _setup_state(self, sched: Schedule) -> tuple[Optional[Path], Position, Optional[dict]]:
        """Load --resume (if any), wrap the model, build optimizer, EMA and step; restore the checkpoint's state.
        -> (resume path, position, the logging window to continue)."""
        cfg, info = self.cfg, self.info
        resume, ckpt = load_resume(cfg, self.output, self.model, info.world_size)
        self.wrapped = wrap_model(self.model, info, cfg.fsdp)
        self.optimizer = build_optimizer(self.make_groups(self.model), sched.base_lr, cfg.betas)
        self.scheduler = make_scheduler(self.optimizer, sched.total, sched.warmup, cfg.min_lr)
        self.ema = None
        if self.fit.ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=self.fit.ema_decay)
        self.stepper = OptimStep(cfg, info, self.model, self.wrapped, self.optimizer, self.scaler, self.ema,
                                 self.loss_fn, self.autocast_dtype, self._diverged)
        self.saved_step = None
        if ckpt is None:
            return None, Position(), None
        self._restore(ckpt, resume)
        pos = Position(ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"])
        self.saved_step = pos.step
        if info.is_main:
            log.info("resumed from %s: epoch %d, step %d", resume, pos.epoch, pos.step)
        return resume, pos, ckpt.get("log_window")

    def _announce(self, resume: Optional[Path], sched: Schedule, logger: RunLogger, step: int) -> None:
        """Main process: log the resume, write config.yaml, and say what the run will do."""
        cfg, info = self.cfg, self.info
        if resume is not None:
            logger.log({"from": str(resume)}, step, prefix="resume")
        save_config(cfg, self.output / "config.yaml")
        log.info(f"{self.kind}: {len(self.train_set)} images, {sched.steps_per_epoch} steps/epoch, {sched.total} "
                 f"steps, effective batch {cfg.batch_size * cfg.accum_iter * info.world_size}, lr "
                 f"{sched.base_lr:.3g}, precision {self.autocast_dtype or torch.float32}, device {info.device}, "
                 f"{info.world_size} process(es)")
        line = self.fit.line(self.kind, len(self.train_set), sched.total, sched.base_lr)
        if line:
            (log.warning if self.fit.warnings else log.info)(line)

    def _run_epoch(self, loader: DataLoader, sampler: GlobalBatchSampler, sched: Schedule, pos: Position,
                   watchdog: Optional[StallWatchdog]) -> None:
        """The rest of epoch `pos.epoch` (or up to the last step): steps, train lines, every-N-steps saves."""
        cfg = self.cfg
        sampler.set_epoch(pos.epoch, start=pos.batch_in_epoch)
        if hasattr(self.train_set, "set_epoch") and not isinstance(self.train_set, IterableDataset):
            self.train_set.set_epoch(pos.epoch)
        self.wrapped.train()
        self.stepper.reset()
        for i, (images, targets) in enumerate(loader, start=pos.batch_in_epoch):
            if i >= sched.steps_per_epoch * cfg.accum_iter:
                break
            if i % cfg.accum_iter == 0:
                self.scheduler.step_update(pos.step)
                lr = group_lr(self.optimizer)
            last = i % cfg.accum_iter == cfg.accum_iter - 1
            self.stepper.forward_backward(images, targets, last, pos.step + 1, pos.epoch)
            if not last:
                continue
            loss = self.stepper.update(pos.step + 1, pos.epoch)
            pos.batch_in_epoch = i + 1
            if loss is None:  # a skipped step (--max-bad-steps)
                continue
            pos.step += 1
            if watchdog is not None:
                watchdog.beat(pos.step)
            self.train_log.step(pos.step, loss, lr, images.shape[0] * cfg.accum_iter * self.info.world_size)
            if pos.step >= sched.total:
                break
            if cfg.save_every and pos.step % cfg.save_every == 0:
                self.save(pos.epoch, pos.batch_in_epoch, pos.step)

    def _diverged(self, what: str, step: int, epoch: int) -> TrainingDiverged:
        if self.saved_step is not None:
            kept = f"the newest finite checkpoint, {self.output / ckpt_io.LAST}, holds step {self.saved_step}"
        else:
            kept = "no checkpoint was written before it"
        return TrainingDiverged(f"{what} at step {step} (epoch {epoch}); stopping. {kept}; lower --blr / --lr, "
                                "add --clip-grad, try --precision fp32, or skip such steps with --max-bad-steps")

    # ---------------------------------------------------------------- evaluation
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

    # ---------------------------------------------------------------- checkpoints
    def _state(self, epoch: int, batch_in_epoch: int, step: int) -> Optional[dict]:
        """The checkpoint dict on the main process (None elsewhere); collective under FSDP."""
        rngs = gather_objects(ckpt_io.rng_state())
        model_sd, opt_sd = ckpt_io.full_state_dicts(self.model, self.wrapped, self.optimizer, self.cfg.fsdp)
        if not self.info.is_main:
            return None
        return {
            "model": model_sd, "optimizer": opt_sd, "scaler": self.scaler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step,
            "best": self.best, "metrics": self.last_metrics,
            "config": dataclasses.asdict(self.cfg), "model_config": self.model_config, "kind": self.kind,
            "rng": rngs, "world_size": self.info.world_size, "log_window": dict(self.train_log.window),
            **({"label_names": list(self.label_names)} if self.label_names is not None else {}),
        }

    def save(self, epoch: int, batch_in_epoch: int, step: int, best: bool = False) -> None:
        """Write checkpoint-last.pth (and -best) atomically; only called with finite weights.

        An OSError (disk full, read-only folder, ...) becomes CheckpointSaveError: the previous checkpoint is left
        in place (the temp file is removed) and the run stops with one line."""
        state = self._state(epoch, batch_in_epoch, step)
        failed = self._write(state, step, best) if state is not None else None
        if self.info.distributed:  # every process stops together
            failed_any = all_reduce(torch.tensor(1.0 if failed else 0.0, device=self.info.device), op="sum")
            if failed_any.item() and failed is None:
                failed = "rank 0 could not write a checkpoint; stopping"
        barrier()
        if failed:
            raise CheckpointSaveError(failed)

    def _write(self, state: dict, step: int, best: bool) -> Optional[str]:
        """Write checkpoint-last.pth (and -best if `best`) -> None, or the line saying why it failed."""
        for name in (ckpt_io.LAST, ckpt_io.BEST) if best else (ckpt_io.LAST,):
            try:
                ckpt_io.save_atomic(state, self.output / name)
            except OSError as e:
                kept = (f"the previous one (step {self.saved_step}) is kept" if self.saved_step is not None
                        else "no earlier checkpoint exists")
                return (f"cannot write {self.output / name} at step {step} ({e.strerror or e}); {kept}. "
                        "Free space or fix the folder, then --resume auto")
            if name == ckpt_io.LAST:
                self.saved_step = step
        return None

    def _restore(self, ckpt: dict, path: Path) -> None:
        """Optimizer, scaler, EMA, best metric and RNG states from a checkpoint (the model is already loaded)."""
        restore_optimizer(ckpt, self.optimizer, self.wrapped, self.cfg.fsdp)
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
        self.best, self.last_metrics = ckpt.get("best"), ckpt.get("metrics") or {}
        restore_rng(ckpt["rng"], self.info, path)
