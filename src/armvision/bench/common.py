"""Helpers shared by the benchmarks: device synchronisation, a temporary environment variable, the CPU's name."""
from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Iterator, Optional, Union

import torch


def sync(device: Union[str, torch.device]) -> None:
    """Wait for the device's queued work (CUDA only; a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def env_var(name: str, value: Optional[str]) -> Iterator[None]:
    """Set (or, with None, unset) environment variable `name` for the block; restore it afterwards."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
