"""Run logging: log.jsonl (one line per logging step), TensorBoard scalars, a progress bar or plain lines, and the
window of training steps that each "train" line averages."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from ..fileio import atomic_write
from ..progress import Progress, format_duration  # noqa: F401  (re-exported: train.format_duration)

log = logging.getLogger("armvision.train")


class RunLogger:
    """Writes OUTPUT/log.jsonl and OUTPUT/tb/ on the main process; does nothing elsewhere."""

    def __init__(self, output: str | Path, enabled: bool = True, tensorboard: bool = True,
                 resume_step: Optional[int] = None):
        """resume_step: drop the lines (and TensorBoard points) after this step, written by an interrupted run."""
        self.enabled = enabled
        self._file = None
        self._tb = None
        if not enabled:
            return
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "log.jsonl"
        if resume_step is not None and path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")  # damaged bytes: lines that are dropped
            keep = [line for line in text.splitlines(keepends=True)
                    if line.strip() and _step_of(line) <= resume_step]
            atomic_write(path, "".join(keep))  # a kill here keeps the old log, never half of it
        self._file = open(path, "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._tb = SummaryWriter(str(out / "tb"), purge_step=purge)

    def log(self, record: dict[str, Any], step: int, prefix: str = "train") -> None:
        """Append `record` (plus the step) to log.jsonl and its numbers to TensorBoard under `prefix/`."""
        if not self.enabled:
            return
        rec = {"kind": prefix, "step": step, **record, "time": round(time.time(), 3)}
        self._file.write(json.dumps(rec) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step",):
                    self._tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return float("inf")  # a torn last line of a killed run: drop it


class TrainLog:
    """The "train" lines: every `every` steps (and at the last one) the mean loss of the steps since the previous
    line, the lr and the images per second; the progress display in between.

    `window` (the loss sum and count since the last line) is saved in checkpoints, so that a resumed run writes
    exactly the lines of an uninterrupted one."""

    def __init__(self, logger: RunLogger, progress: Progress, every: int, total: int, steps_per_epoch: int,
                 window: Optional[dict] = None):
        self.logger, self.progress, self.every, self.total = logger, progress, every, total
        self.steps_per_epoch = steps_per_epoch
        self.window = dict(window or {"loss": 0.0, "n": 0})
        self.t0, self.images = time.time(), 0
        self.loss_avg = float("nan")  # the mean loss of the last line written

    def step(self, step: int, loss: float, lr: float, images: int) -> None:
        """Count one finished optimizer step (`loss`: its mean loss, `images`: over all processes); log if due."""
        self.window["loss"] += loss
        self.window["n"] += 1
        self.images += images
        if step % self.every != 0 and step != self.total:
            self.progress.update(step, lr=lr)
            return
        dt = max(1e-9, time.time() - self.t0)
        self.loss_avg = self.window["loss"] / max(1, self.window["n"])
        self.logger.log({"epoch": round(step / self.steps_per_epoch, 4), "loss": self.loss_avg, "lr": lr,
                         "img_per_s": self.images / dt}, step, prefix="train")
        self.progress.update(step, loss=self.loss_avg, lr=lr, img_s=round(self.images / dt, 1))
        self.window = {"loss": 0.0, "n": 0}
        self.t0, self.images = time.time(), 0
