"""Process groups (torchrun: nccl on GPU, gloo on CPU), data sharding, reductions, DDP / FSDP wrapping."""
from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when CUDA is available, else cpu."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str = "auto", timeout: float = 1800.0) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1; otherwise a single process.

    timeout: seconds joining the group, and later any collective, may wait for the other processes before the
    job fails (instead of hanging forever on a frozen or lost process). Under torchrun each process also exits
    when the launcher dies (`watch_parent`).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        watch_parent()
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=float(timeout)))
    return DistInfo(rank, world, local_rank, dev)


_parent_watch: Optional[threading.Thread] = None


def watch_parent(interval: float = 1.0) -> None:
    """Exit this process soon after its parent (the torchrun launcher) dies, e.g. killed with SIGKILL.

    A daemon thread polls the parent pid: when the process is re-parented, the launcher is gone and nobody will
    ever stop this process, so it says so on stderr and exits (code 1). Checkpoints stay whole (atomic saves).
    """
    global _parent_watch
    if _parent_watch is not None:
        return
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                rank = os.environ.get("RANK", "?")
                log.error("rank %s: the launcher (pid %d) has exited; stopping this process", rank, parent)
                os._exit(1)

    _parent_watch = threading.Thread(target=watch, name="armvision-parent-watch", daemon=True)
    _parent_watch.start()


class StallWatchdog:
    """Warns (once per stall, on stderr) when no training step has finished for `after` seconds.

    In a distributed run that almost always means another process is frozen or gone and this one waits in a
    collective; the message says so, and that the job fails when --dist-timeout runs out.
    """

    def __init__(self, after: float, rank: int, timeout: float, poll: Optional[float] = None):
        self.after, self.rank, self.timeout = float(after), rank, float(timeout)
        self.last, self.step, self.warned = time.monotonic(), 0, False
        self._stop = threading.Event()
        self._poll = poll if poll is not None else max(0.2, min(5.0, self.after / 4))
        self._thread = threading.Thread(target=self._run, name="armvision-stall-watchdog", daemon=True)
        self._thread.start()

    def beat(self, step: int) -> None:
        if self.warned:
            log.warning("rank %d: training continues at step %d", self.rank, step)
        self.last, self.step, self.warned = time.monotonic(), step, False

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            idle = time.monotonic() - self.last
            if idle >= self.after and not self.warned:
                self.warned = True
                msg = (f"rank {self.rank}: no training step has finished for {idle:.0f} s (last: step "
                       f"{self.step}); another process is probably frozen or gone and this one waits for it. The "
                       f"job fails when --dist-timeout ({self.timeout:.0f} s) runs out")
                log.warning(msg)

    def close(self) -> None:
        self._stop.set()


def run_distributed(train_fn: Any, cfg: Any) -> Any:
    """train_fn(cfg, info) inside a set-up process group (torn down afterwards); its summary on rank 0, else None."""
    info = init_distributed(cfg.device, getattr(cfg, "dist_timeout", 1800.0))
    try:
        summary = train_fn(cfg, info)
    finally:
        cleanup()
    return summary if info.is_main else None


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(t: torch.Tensor, op: str = "mean") -> torch.Tensor:
    """Sum or mean of `t` over processes (a no-op in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        if op == "mean":
            t /= dist.get_world_size()
    return t


def gather_objects(obj: Any) -> list:
    """List of `obj` from every process (a one-element list in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of one global order shared by all processes: rank r takes the r-th slice of each global batch.

    The order of epoch e is a permutation seeded by (seed, e), so it does not depend on the number of processes:
    N processes with batch B/N see exactly the batches of one process with batch B. `start` skips the first
    micro-batches of the epoch (exact resume). Incomplete global batches are dropped.
    """

    def __init__(self, n: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True):
        self.n, self.batch_size, self.world_size, self.rank = n, batch_size, world_size, rank
        self.seed, self.shuffle, self.epoch, self.start = seed, shuffle, 0, 0
        if n < batch_size * world_size:
            raise ConfigError(f"the dataset has {n} images, fewer than one global batch "
                              f"({batch_size} x {world_size} processes); lower --batch-size")

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        gb = self.batch_size * self.world_size
        for b in range(self.start, len(self)):
            lo = b * gb + self.rank * self.batch_size
            yield order[lo:lo + self.batch_size]


class StreamEpochs:
    """What GlobalBatchSampler is for an indexed dataset, for a stream (data.TarShards, which splits itself over
    processes and DataLoader workers): an epoch is samples // global batch steps on every process, and `set_epoch`
    tells the stream which epoch to draw (resuming: how many of this process's batches to skip)."""

    def __init__(self, stream: Any, batch_size: int, world_size: int = 1):
        self.stream, self.batch_size, self.world_size = stream, batch_size, world_size
        if len(stream) < batch_size * world_size:
            raise ConfigError(f"the dataset has {len(stream)} images, fewer than one global batch "
                              f"({batch_size} x {world_size} processes); lower --batch-size")

    def __len__(self) -> int:
        return len(self.stream) // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.stream.set_epoch(epoch, start, self.batch_size)


class ShardSampler(Sampler[int]):
    """Evaluation: rank r takes indices r, r+N, ...; with `pad`, every rank gets ceil(n/N) indices, the extra ones
    being >= n (the dataset marks them as padding), so that all ranks run the same number of batches (FSDP)."""

    def __init__(self, n: int, world_size: int = 1, rank: int = 0, pad: bool = False):
        stop = -(-n // world_size) * world_size if pad else n
        self.indices = list(range(rank, stop, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def wrap_model(model: nn.Module, info: DistInfo, fsdp: bool = False) -> nn.Module:
    """DDP (or FSDP2 `fully_shard` per block, then the whole model) when running under torchrun."""
    if fsdp:
        if not info.distributed:
            raise ConfigError("--fsdp needs several processes: run under torchrun --nproc_per_node=N")
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "layers", []):
            fully_shard(block)
        fully_shard(model)
        return model
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
