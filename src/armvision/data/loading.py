"""How many data-loading workers a process gets when none are asked for: the CPUs it may use (its affinity, shared
among the processes torchrun starts on the node), minus one for the process itself, at most 8. More workers than
CPUs only make them fight (torch warns about it, and throughput swings), so that is never the default."""
from __future__ import annotations

import os
from typing import Optional

MAX_DEFAULT_WORKERS = 8


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_num_workers(processes: Optional[int] = None) -> int:
    """min(8, CPUs per process - 1), never below 0; `processes`: processes sharing the CPUs (default: torchrun's
    LOCAL_WORLD_SIZE, else 1)."""
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(0, min(MAX_DEFAULT_WORKERS, usable_cpus() // max(1, processes) - 1))


def resolve_num_workers(num_workers: Optional[int]) -> int:
    """The workers asked for, or the default for this machine when None."""
    return default_num_workers() if num_workers is None else int(num_workers)
