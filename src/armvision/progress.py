"""Progress for long work, one behaviour for every command: a tqdm bar when stderr is a terminal (and info messages
are shown), plain lines through logging (logger "armvision") everywhere else: a pipe or a log file gets readable
lines, never carriage-return bars. `--quiet` hides both."""
from __future__ import annotations

import logging
import math
import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

log = logging.getLogger("armvision.progress")
T = TypeVar("T")


def format_duration(seconds: float) -> str:
    """H:MM:SS ("?" for an unknown duration)."""
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def on_terminal() -> bool:
    """Whether a bar can be drawn: stderr is a terminal and info messages are shown (not --quiet)."""
    return sys.stderr.isatty() and logging.getLogger("armvision").isEnabledFor(logging.INFO)


class Progress:
    """A tqdm bar on a terminal; otherwise a plain line every `every` steps (and at the last), with an ETA."""

    def __init__(self, total: Optional[int], initial: int = 0, enabled: bool = True, every: int = 20,
                 desc: str = "train", use_bar: Optional[bool] = None, unit: str = "step"):
        self.total, self.step, self.enabled, self.every, self.desc = total, initial, enabled, max(1, every), desc
        self.unit, self.start_step, self.t0, self.stats = unit, initial, time.time(), {}
        self.bar = None
        if enabled and (on_terminal() if use_bar is None else use_bar):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, unit=unit)

    def update(self, step: int, **stats: float) -> None:
        """Advance to `step` and show `stats` (loss, lr, img/s); the ETA comes from the rate since the start."""
        if not self.enabled:
            return
        done = step - self.step
        self.step = step
        self.stats.update(stats)  # keep the last loss / img/s shown between logging steps
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in self.stats.items()}
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(done)
        elif step % self.every == 0 or step == self.total:
            rate = (step - self.start_step) / max(1e-9, time.time() - self.t0)
            eta = (self.total - step) / rate if rate > 0 and self.total else float("inf")
            parts = "".join(f" {k} {v}" for k, v in shown.items())
            of = f"/{self.total}" if self.total else ""
            log.info(f"{self.desc} {self.unit} {step}{of}{parts} eta {format_duration(eta)}")

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            log.info(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def track(items: Iterable[T], desc: str, enabled: bool = True, total: Optional[int] = None,
          unit: str = "batch") -> Iterator[T]:
    """Yield `items`, showing progress (a bar on a terminal, else a line about every 10 % of `total`)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    every = max(1, math.ceil(total / 10)) if total else 50
    bar = Progress(total, enabled=enabled, every=every, desc=desc, unit=unit)
    try:
        for i, item in enumerate(items, start=1):
            yield item
            bar.update(i)
    finally:
        bar.close()
