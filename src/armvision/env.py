"""The one module that reads armvision's environment variables (`ARMVISION_*`), each with one check.

An environment variable is at most the default of a choice that an argument, a config field or a flag can make
explicitly; the functions below are read at call time (so a test's monkeypatch.setenv takes effect), and a bad value
is one ConfigError naming the variable and the values it takes.

    ARMVISION_SCAN_BACKEND      default scan backend where the caller says "auto": auto|ref|torch|cpu|triton|cuda
    ARMVISION_TRITON_DIRECTIONS 1: the mixer's directions in one Triton launch on CUDA too (default: on CPU tensors
                                under Triton's interpreter only), 0: one Triton launch per direction everywhere
    ARMVISION_SCAN_COMPILE      1: torch.compile the chunk kernels of the "torch" backend (default 0)
    ARMVISION_CPU_KERNEL        0: never build or load the fused C kernel (default 1)
    ARMVISION_CACHE             folder of the built C kernels (default ~/.cache/armvision/kernels)
    ARMVISION_CPU_CFLAGS        extra C compiler flags for the kernel build, space-separated (experiments)
    ARMVISION_CPU_FWD_ORDER     the C kernel's forward loop order in the mixer: auto|steps|blocks (default auto:
                                timed once per built library, see cpu_kernel.choose_fwd_order)
    ARMVISION_HUGE_PAGES        0: leave torch's CPU allocator as it is (default 1: on Linux, importing armvision
                                before torch sets torch's THP_MEM_ALLOC_ENABLE=1, so that buffers over 2 MiB sit in
                                transparent huge pages; see huge_pages_for_torch)
    ARMVISION_MALLOC            0: leave the C library's malloc settings as they are (default 1: on Linux with glibc,
                                `import armvision` keeps freed memory for reuse; see reuse_freed_memory)
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import List, Optional

from .errors import ConfigError

SCAN_BACKEND = "ARMVISION_SCAN_BACKEND"
TRITON_DIRECTIONS = "ARMVISION_TRITON_DIRECTIONS"
SCAN_COMPILE = "ARMVISION_SCAN_COMPILE"
CPU_KERNEL = "ARMVISION_CPU_KERNEL"
CACHE = "ARMVISION_CACHE"
CPU_CFLAGS = "ARMVISION_CPU_CFLAGS"
CPU_FWD_ORDER = "ARMVISION_CPU_FWD_ORDER"
HUGE_PAGES = "ARMVISION_HUGE_PAGES"
MALLOC = "ARMVISION_MALLOC"
NAMES = (SCAN_BACKEND, TRITON_DIRECTIONS, SCAN_COMPILE, CPU_KERNEL, CACHE, CPU_CFLAGS, CPU_FWD_ORDER, HUGE_PAGES,
         MALLOC)
TORCH_THP = "THP_MEM_ALLOC_ENABLE"  # torch's own switch (c10's CPU allocator reads it once, at its first allocation)
# glibc's own variables for the two settings reuse_freed_memory makes (read once, when the process starts)
GLIBC_MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed mmap threshold on 64-bit systems


def trim_threshold() -> int:
    """How much free memory glibc keeps at the top of the heap: a quarter of the RAM, at most 2 GiB (mallopt takes an
    int): a train step of ARM-B at batch 8 frees ~1.5 GB of activations at once, which a smaller threshold returns
    to the system and the next step faults in again."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        ram = 8 << 30
    return min((1 << 31) - 1, ram // 4)

SCAN_BACKENDS = ("auto", "ref", "torch", "cpu", "triton", "cuda")  # the names armvision.ops implements
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def _flag(name: str) -> Optional[bool]:
    """A yes/no variable: None when unset or empty."""
    value = _raw(name).lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"environment variable {name} is {value!r}; use 1 (or true/yes/on) or 0 (or false/no/off)")


def scan_backend() -> Optional[str]:
    """The scan backend ARMVISION_SCAN_BACKEND names, or None when it is unset or empty."""
    value = _raw(SCAN_BACKEND).lower()
    if not value:
        return None
    if value not in SCAN_BACKENDS:
        raise ConfigError(f"environment variable {SCAN_BACKEND} is {value!r}; choose one of {', '.join(SCAN_BACKENDS)}")
    return value


def triton_directions() -> Optional[bool]:
    """ARMVISION_TRITON_DIRECTIONS: True / False, or None (unset: the Triton room's default)."""
    return _flag(TRITON_DIRECTIONS)


def scan_compile() -> bool:
    """ARMVISION_SCAN_COMPILE: torch.compile the "torch" backend's chunk kernels (default False)."""
    return bool(_flag(SCAN_COMPILE))


def cpu_kernel_enabled() -> bool:
    """ARMVISION_CPU_KERNEL: whether the fused C kernel may be built and loaded (default True)."""
    return _flag(CPU_KERNEL) is not False


def cache_dir() -> Optional[str]:
    """ARMVISION_CACHE: the kernel cache folder, or None for the default."""
    return _raw(CACHE) or None


def cpu_cflags() -> List[str]:
    """ARMVISION_CPU_CFLAGS: extra compiler flags for the C kernel (e.g. -DARMV_VL=8), [] when unset."""
    return _raw(CPU_CFLAGS).split()


FWD_ORDERS = ("auto", "steps", "blocks")


def cpu_fwd_order() -> str:
    """ARMVISION_CPU_FWD_ORDER: "auto" (unset or empty), "steps" or "blocks"."""
    value = _raw(CPU_FWD_ORDER).lower() or "auto"
    if value not in FWD_ORDERS:
        raise ConfigError(f"environment variable {CPU_FWD_ORDER} is {value!r}; choose one of {', '.join(FWD_ORDERS)}")
    return value


def huge_pages() -> bool:
    """ARMVISION_HUGE_PAGES: whether armvision asks torch for transparent huge pages (default True)."""
    return _flag(HUGE_PAGES) is not False


def huge_pages_for_torch() -> bool:
    """Set torch's THP_MEM_ALLOC_ENABLE=1 where that can still take effect: on Linux, before torch is imported, when
    neither the user (THP_MEM_ALLOC_ENABLE set either way) nor ARMVISION_HUGE_PAGES=0 said otherwise. A fresh CPU
    buffer otherwise costs one page fault per 4 KiB at its first write: at 1024 px an ARM-B forward writes ~100 MB
    per layer into new buffers, and those faults were ~8 % of its CPU time (docs/performance.md). Returns whether
    it set the variable. Called by `import armvision`, first thing."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules or TORCH_THP in os.environ:
        return False
    if not huge_pages():
        return False
    os.environ[TORCH_THP] = "1"
    return True


def malloc_tuning() -> bool:
    """ARMVISION_MALLOC: whether armvision sets glibc's malloc thresholds at import (default True)."""
    return _flag(MALLOC) is not False


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse: buffers up to 32 MiB from the heap instead of their own mmap
    (M_MMAP_THRESHOLD), and the heap's free top kept up to `trim_threshold()` (M_TRIM_THRESHOLD). By default glibc
    serves a large buffer by mmap and unmaps it when freed (raising its threshold only for sizes it has seen freed),
    so that a model's activations, allocated and freed in every layer, are new pages again and again: each first
    write a page fault plus the kernel's zeroing. At 224 px, batch 8, fp32 that was ~45,000 faults and 0.15 s of
    system time per ARM-B forward (7 %), and 0.3-0.75 s per train step; with these settings (almost) none after the
    first steps (docs/performance.md). The cost: memory freed by the model stays with the process (its RSS keeps its
    peak), as with torch's CUDA caching allocator. Done on Linux with glibc, unless ARMVISION_MALLOC=0 or the user set
    glibc's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ (or those tunables in GLIBC_TUNABLES). Takes effect
    for later allocations whenever called (torch imported or not). Returns whether it changed the settings. Called by
    `import armvision`."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (not sys.platform.startswith("linux") or not malloc_tuning() or any(v in os.environ for v in GLIBC_MALLOC_VARS)
            or "malloc.mmap_threshold" in tunables or "malloc.trim_threshold" in tunables):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt is a stub
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h parameter numbers
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, trim_threshold()))
