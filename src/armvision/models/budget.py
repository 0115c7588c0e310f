"""The up-front size check: a model that could not fit this machine's memory is refused before anything is allocated.

Each model family counts, without building itself, a lower bound of the memory it needs (`bytes_needed`: parameters
and buffers in fp32, the Python objects of its layers, one image's activations through one block), from one block
built on the meta device and its config's sizes. `require_fits` compares that with the machine's memory (physical
memory, or the container's limit when lower) and refuses with both sizes in bytes. Nothing is checked while the
default device is "meta" (building there allocates nothing).
"""
from __future__ import annotations

import itertools
import os
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError

FLOAT = 4  # bytes of an fp32 value
PY_BYTES_PER_MODULE = 2048  # Python objects of one nn.Module (measured: 3-6 KiB; a lower bound)
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_limit() -> Optional[int]:
    """Bytes of memory this process can have: physical memory, or the container (cgroup) limit when lower."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit
            limits.append(int(text))
    return min(limits) if limits else None


def counted(make: Callable[[], nn.Module]) -> Tuple[int, int]:
    """(parameter and buffer values, modules) of the module `make()` builds on the meta device (nothing allocated);
    ConfigError when its sizes are beyond what a tensor can hold."""
    try:
        with torch.device("meta"):
            module = make()
    except (RuntimeError, OverflowError, MemoryError) as e:
        raise ConfigError(f"sizes too large to build a layer ({str(e).splitlines()[0][:120]})") from None
    values = sum(t.numel() for t in itertools.chain(module.parameters(), module.buffers()))
    return values, sum(1 for _ in module.modules())


def layers_bytes(count: int, make: Callable[[], nn.Module]) -> int:
    """Bytes of `count` layers like the one `make()` builds: their values and their Python objects."""
    values, modules = counted(make)
    return count * (FLOAT * values + PY_BYTES_PER_MODULE * modules)


def require_fits(what: str, need: int, limit: Optional[int] = None) -> None:
    """ConfigError when `need` bytes exceed this machine's memory (`limit`: the machine's, by default)."""
    if torch.get_default_device().type == "meta":
        return
    limit = memory_limit() if limit is None else limit
    if limit and need > limit:
        raise ConfigError(f"{what} needs at least {need:,} bytes ({need / 1e9:.1f} GB) of memory for its weights and "
                          f"one image's activations; this machine has {limit:,} bytes ({limit / 1e9:.1f} GB). Use a "
                          "smaller width, depth or image size")
