"""Helpers shared by the benchmarks: device synchronisation, a temporary scan backend for a model, the CPU's name."""
from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Iterator, Union

import torch

from ..nn import MambaMixer


def sync(device: Union[str, torch.device]) -> None:
    """Wait for the device's queued work (CUDA only; a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def scan_backend(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Run every Mamba mixer of `model` on scan backend `name` for the block (their `scan_backend` argument);
    restore each mixer's own choice afterwards."""
    mixers = [m for m in model.modules() if isinstance(m, MambaMixer)]
    before = [m.scan_backend for m in mixers]
    for m in mixers:
        m.scan_backend = name
    try:
        yield
    finally:
        for m, old in zip(mixers, before):
            m.scan_backend = old


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
