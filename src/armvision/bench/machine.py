"""The machine side of `armvision bench model`: the environment record, the matmul peak (for MFU) and peak memory.

Peak memory. CUDA: `torch.cuda.max_memory_allocated` minus what was allocated at `start()`. CPU: torch has no CPU
allocator statistics, so the growth of the kernel's resident-set high-water mark (VmHWM in /proc/self/status, reset
through /proc/self/clear_refs at `start()`) over the resident set at that moment; exact in a fresh process.
"""
from __future__ import annotations

import ctypes
import gc
import os
import platform
import struct
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from .common import cpu_name, sync


def environment(device: str) -> dict:
    """What a reader needs to reproduce or discount the numbers."""
    import timm

    env = {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "device": device, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads()}
    if hasattr(os, "getloadavg"):
        env["loadavg_1m_start"] = round(os.getloadavg()[0], 2)
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return env


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "asimd", "sve", "bf16")


def isa_line() -> str:
    """One line that says which CPU and instruction sets a number was measured with, and which build of the fused
    CPU kernel ran: "Intel(R) Xeon(R) Processor; flags avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile; kernel
    isa=avx512 lanes=16 fwd-order=blocks (-O3 -march=native ...)"."""
    from ..ops import cpu_kernel

    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    info = cpu_kernel.build_info()
    kernel = (f"kernel isa={info['isa']} lanes={info['lanes']} fwd-order={info.get('fwd_order', 'steps')} "
              f"({' '.join(info.get('flags', []))})"
              if info["isa"] else f"kernel unavailable ({info.get('why')})")
    have = " ".join(f for f in ISA_FLAGS if f in flags) or "unknown"
    return f"{cpu_name()}; flags {have}; {kernel}"


class _PerfAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64), ("read_format", ctypes.c_uint64),
                ("flags", ctypes.c_uint64), ("pad", ctypes.c_uint64 * 12)]


def count_cycles(fn) -> Optional[int]:
    """CPU cycles this thread and the threads it starts spend in fn() (user space), from the kernel's perf events
    (what `perf stat` reads); None where the machine does not expose a cycle counter (many virtual machines) or
    is not Linux x86-64 / arm64."""
    nr = {"x86_64": 298, "aarch64": 241}.get(platform.machine())
    if nr is None or not sys.platform.startswith("linux"):
        return None
    import fcntl

    libc = ctypes.CDLL(None, use_errno=True)
    attr = _PerfAttr(type=0, size=ctypes.sizeof(_PerfAttr), config=0)  # PERF_TYPE_HARDWARE, CPU_CYCLES
    attr.flags = 1 | (1 << 1) | (1 << 5) | (1 << 6)  # disabled, inherit (new threads), exclude_kernel, _hv
    fd = libc.syscall(nr, ctypes.byref(attr), 0, -1, -1, 0)
    if fd < 0:
        return None
    try:
        fcntl.ioctl(fd, 0x2403, 0)  # PERF_EVENT_IOC_RESET
        fcntl.ioctl(fd, 0x2400, 0)  # PERF_EVENT_IOC_ENABLE
        fn()
        fcntl.ioctl(fd, 0x2401, 0)  # PERF_EVENT_IOC_DISABLE
        return struct.unpack("q", os.read(fd, 8))[0]
    finally:
        os.close(fd)


def matmul_peak_flops(device: str, dtype: torch.dtype, n: Optional[int] = None, repeats: int = 10) -> float:
    """Best FLOP/s of an n x n @ n x n matmul: the machine's practical peak for MFU."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if i:  # first call is warm-up
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _proc_status(key: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    """Give memory freed by Python/torch back to the OS (glibc), so it cannot hide inside the baseline."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory growth between start() and peak_mb(), see the module docstring."""

    def __init__(self, device: str):
        self.device = device
        self.base = 0

    def start(self) -> None:
        gc.collect()
        _malloc_trim()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
        except OSError:
            pass
        self.base = _proc_status("VmRSS") or 0

    def peak_mb(self) -> Optional[float]:
        if self.device.startswith("cuda"):
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        hwm = _proc_status("VmHWM")
        return None if hwm is None else (hwm - self.base) / 2**20
