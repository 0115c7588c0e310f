"""Helpers of the GPU check: the clock and log, a CUDA-event timer, peak memory, running a model on a chosen scan
backend (with a fallback to the automatic choice that records why), TF32."""
from __future__ import annotations

import contextlib
import gc
import time
from typing import Callable, List, Optional

PAPER_IMG_S = 1_281_167 * 300 / (34 * 3600)  # ARM-B: 300 epochs of ImageNet-1k in 34 h -> ~3,140 img/s in total
_START = [time.perf_counter()]


def start_clock() -> None:
    """Restart the clock that `spent` reads (at the start of a check)."""
    _START[0] = time.perf_counter()


def spent() -> float:
    """Seconds since the check started."""
    return time.perf_counter() - _START[0]


def log(msg: str) -> None:
    """One progress line, time-stamped."""
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Timer:
    """Seconds per call of fn: CUDA events on CUDA, perf_counter on CPU; the median of `iters` after `warmup`."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, torch.device(device)

    def __call__(self, fn: Callable[[], object], warmup: int, iters: int, before: Optional[Callable] = None):
        torch = self.torch
        for _ in range(warmup):
            if before:
                before()
            fn()
        times = []
        for _ in range(iters):
            if before:
                before()
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        times.sort()
        return times[len(times) // 2], times


def reset_peak(device) -> None:
    """Collect garbage; on CUDA empty the cache and reset the peak statistics."""
    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device) -> Optional[float]:
    """Peak CUDA memory allocated since the last reset, in MiB (None on CPU)."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def with_backend_fallback(run: Callable[[str], dict], backend: Optional[str], notes: List[str]) -> dict:
    """run(backend) (the models built with that `scan_backend`; None: "auto"); if that raises, record the error in
    `notes` and in the row, and run again with "auto"."""
    try:
        r = run(backend or "auto")
        r["scan_backend"] = backend or "auto"
        return r
    except Exception as e:
        if backend in (None, "auto"):
            raise
        err = f"{type(e).__name__}: {str(e)[:300]}"
        notes.append(f"scan backend {backend!r} failed ({err}); ran with 'auto'")
        log(notes[-1])
        r = run("auto")
        r["scan_backend"] = "auto"
        r["forced_backend_error"] = err
        return r


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 matmuls for the fp32 model runs (as training scripts set it); off for the scan checks and timings."""
    import torch

    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
