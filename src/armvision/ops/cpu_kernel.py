"""Build, load and call the fused CPU kernels of csrc/ (scan_fwd.c, scan_bwd.c, conv_cpu.c, gate_cpu.c over
armv_common.h and scan_common.h).

The C source is compiled at first use with the system C compiler (`cc`, or $CC) into a shared library cached
under $ARMVISION_CACHE (default ~/.cache/armvision/kernels), keyed by a hash of the source, the compiler, the
flags and the CPU; later processes load the cached file with ctypes. No torch headers, CUDA or OpenMP runtime are
needed (threads are pthreads). Where no compiler is found or the build fails, `load()` returns None, a one-line
notice is logged once, and callers fall back to the pure-PyTorch path. ARMVISION_CPU_KERNEL=0 disables the kernel
(the environment is read by armvision.env).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .. import env
from ..fileio import atomic_write_via

log = logging.getLogger("armvision.ops")
CSRC = Path(__file__).with_name("csrc")
# one library from every .c file of csrc/ (scan_fwd.c, scan_bwd.c, conv_cpu.c, gate_cpu.c; all include armv_common.h)
ENV_DISABLE = env.CPU_KERNEL
ENV_CACHE = env.CACHE
# Tried in order; the first that compiles is used. -march/-mcpu=native: the build is for this machine's CPU and its
# instruction set (part of the cache key): csrc/armv_common.h picks the vector width from the compiler's target
# (AVX-512: 16 lanes, AVX/AVX2: 8, SSE/NEON/other: 4). No -ffast-math: NaN must propagate and the float rounding the
# math helpers rely on must hold.
FLAG_SETS = (
    ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"],
    ["-O3", "-mcpu=native", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"],
    ["-O3", "-fno-math-errno"],
)
MAX_STATE = 64  # NMAX in the C source

# integer parameter slots and pointer slots, in the order of the enums in scan_common.h, conv_cpu.c and gate_cpu.c
INT_SLOTS = ("batch L G Dg N chunk softplus threads u_sg u_sb u_st dl_sg dl_sb dl_st "
             "b_mode b_sg b_sb b_st b_sn c_mode c_sg c_sb c_st c_sn z_sg z_sb z_st o_sg o_sb o_st "
             "du_sg du_sb du_st dd_sg dd_sb dd_st dz_sg dz_sb dz_st act_dt bc_dt scale_bits "
             "u_sc dl_sc z_sc o_sc r").split()
PTR_SLOTS = ("u delta A B C D bias z idx out ckpt last dout dlast du ddelta dz dBp dCp dAp dDp dbiasp "
             "dB dC dA dD dbias wdt").split()

CONV_INT_SLOTS = "batch L G Dg K threads x_sb x_st dt".split()
CONV_PTR_SLOTS = "x w bias idx u du dx dwp dbp dw db".split()
GATE_INT_SLOTS = "rows cols dt threads".split()
GATE_PTR_SLOTS = "a b ba bb out dout da db".split()
SLOTS = {"armv_scan_fwd": (INT_SLOTS, PTR_SLOTS), "armv_scan_bwd": (INT_SLOTS, PTR_SLOTS),
         "armv_conv_fwd": (CONV_INT_SLOTS, CONV_PTR_SLOTS), "armv_conv_bwd": (CONV_INT_SLOTS, CONV_PTR_SLOTS),
         "armv_gate_fwd": (GATE_INT_SLOTS, GATE_PTR_SLOTS), "armv_gate_bwd": (GATE_INT_SLOTS, GATE_PTR_SLOTS)}

_lock = threading.Lock()
_state: dict = {}


def _compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_id() -> str:
    info = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info += "".join(line for line in f if line.startswith(("flags", "model name", "Features")))
    except OSError:
        pass
    return info


def isa_flags() -> List[str]:
    """Flags for this CPU's instruction set beyond -march=native: gcc emits 256-bit vectors on AVX-512 CPUs unless
    told -mprefer-vector-width=512 (the kernel's own vectors are 512-bit there; this also widens the few loops that
    the compiler vectorises itself)."""
    flags = set(_cpu_id().split())
    return ["-mprefer-vector-width=512"] if "avx512f" in flags and platform.machine() in ("x86_64", "AMD64") else []


def cache_dir() -> Path:
    return Path(env.cache_dir() or Path.home() / ".cache" / "armvision" / "kernels")


def _build(cc: str) -> Tuple[Path, List[str]]:
    """Compile the source (first working flag set) into the cache; returns the library path and its flags."""
    src = b"".join(p.read_bytes() for p in sorted(CSRC.iterdir()) if p.suffix in (".c", ".h"))
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    errors = []
    extra = env.cpu_cflags()  # for experiments, e.g. -DARMV_VL=8
    for i, flags in enumerate(FLAG_SETS):
        flags = [*flags, *(isa_flags() if i == 0 else []), *extra]
        key = hashlib.sha256(src + cc.encode() + " ".join(flags).encode() + _cpu_id().encode()).hexdigest()[:16]
        lib = cache_dir() / f"scan_cpu-{key}{suffix}"
        if lib.exists():
            return lib, flags
        try:  # atomic: a concurrent build of the same key writes the same bytes
            return atomic_write_via(lib, lambda out: _compile(cc, flags, out)), flags
        except _BuildFailed as e:
            errors.append(str(e))
    raise RuntimeError("; ".join(errors))


class _BuildFailed(RuntimeError):
    """The compiler rejected one flag set."""


def _compile(cc: str, flags: List[str], out: Path) -> None:
    cmd = [cc, *flags, "-shared", "-fPIC", "-pthread", "-I", str(CSRC), "-o", str(out),
           *(str(p) for p in sorted(CSRC.glob("*.c"))), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise _BuildFailed(f"{' '.join(cmd)}: {res.stderr.strip().splitlines()[-1:] or res.returncode}")


def load():
    """The loaded kernel library, or None (no compiler, build failed, or disabled); built once per process, its
    forward loop order chosen (`choose_fwd_order`) when first loaded."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        lib, why = None, None
        if not env.cpu_kernel_enabled():
            why = f"disabled by {ENV_DISABLE}"
        else:
            cc = _compiler()
            if cc is None:
                why = "no C compiler found (set CC or install gcc/clang)"
            else:
                try:
                    path, flags = _build(cc)
                    lib = ctypes.CDLL(str(path))
                    lib.armv_lanes.restype = ctypes.c_int
                    if hasattr(lib, "armv_build_info"):  # (absent from builds of older sources, see kernel_ab.py)
                        lib.armv_build_info.restype = ctypes.c_char_p
                    _state["build"] = dict(path=str(path), compiler=cc, flags=flags)
                    for name in (n for n in SLOTS if hasattr(lib, n)):
                        getattr(lib, name).argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p)]
                        getattr(lib, name).restype = ctypes.c_int
                except Exception as e:  # compiler error, unwritable cache, unloadable library
                    lib, why = None, f"build failed: {e}"
        if lib is None:
            log.warning("armvision: fused CPU scan kernel unavailable (%s); using the PyTorch scan", why if len(why) <= 120 else f"{why[:14]}...{why[-90:]}")
        _state["lib"], _state["why"] = lib, why
    if lib is not None and hasattr(lib, "armv_set_fwd_order"):
        choose_fwd_order(lib)  # outside the lock: timing runs the kernel, whose calls load() again (and get lib)
    return lib


FWD_ORDERS = ("steps", "blocks")  # armv_set_fwd_order(0 | 1)
TUNE_MARGIN = 0.97  # "blocks" only where it takes under 97 % of the time of "steps" (the default)


# how the two orders are timed: set by backends/cpu.py (`time_fwd_orders`), which can run the kernel on tensors
# (this module sits below it); None: not timed, the steps order kept
fwd_order_timer: Optional[Callable[[object], float]] = None


def choose_fwd_order(lib) -> str:
    """Set the forward's loop order of the mixer's scan (tile16_fwd in csrc/scan_fwd.c: the steps or the blocks of
    channels outside; the same bits either way, only the speed differs by core) and return it: as
    ARMVISION_CPU_FWD_ORDER says, or "auto": the choice stored beside the built library, or, at its first load, the
    faster of the two by a short timing (~0.2 s), stored there for later processes. A store that cannot be written
    or read back is timed again."""
    order, how = env.cpu_fwd_order(), "set by " + env.CPU_FWD_ORDER
    if order == "auto":
        note = Path(_state.get("build", {}).get("path", "")).with_suffix(".fwd-order")
        try:
            order, how = note.read_text().split()[0], f"stored in {note.name}"
            if order not in FWD_ORDERS:
                raise ValueError(order)
        except (OSError, ValueError, IndexError):
            if fwd_order_timer is None:
                order, how = "steps", "not timed (no timer registered)"
            else:
                ratio = fwd_order_timer(lib)
                order, how = ("blocks" if ratio < TUNE_MARGIN else "steps"), f"timed: blocks / steps = {ratio:.3f}"
                try:
                    atomic_write_via(note, lambda out: out.write_text(f"{order} {ratio:.3f}\n"))
                except OSError:
                    pass
    lib.armv_set_fwd_order(FWD_ORDERS.index(order))
    _state.setdefault("build", {})["fwd_order"] = order
    _state["build"]["fwd_order_how"] = how
    return order


def build_info() -> dict:
    """Which build runs: {"isa": "avx512" | "avx2" | "sse4" | "neon" | "generic", "lanes", "flags", "compiler",
    "path", "fwd_order": "steps" | "blocks", "fwd_order_how"}; {"isa": None, "why": ...} where the kernel is
    unavailable."""
    lib = load()
    if lib is None:
        return {"isa": None, "why": _state.get("why")}
    info = dict(part.split("=", 1) for part in lib.armv_build_info().decode().split())
    return {"isa": info["isa"], "lanes": int(info["lanes"]), **_state.get("build", {})}


def unavailable_reason() -> Optional[str]:
    load()
    return _state.get("why")


def reset() -> None:
    """Forget the loaded library (tests: force a rebuild / a fallback)."""
    with _lock:
        _state.clear()


def _call(fn_name: str, ints: dict, ptrs: dict) -> None:
    lib = load()
    if lib is None:
        raise RuntimeError(f"fused CPU kernel unavailable: {_state.get('why')}")
    int_slots, ptr_slots = SLOTS[fn_name]
    ip = (ctypes.c_int64 * len(int_slots))(*[int(ints.get(k, 0)) for k in int_slots])
    pp = (ctypes.c_void_p * len(ptr_slots))(*[_ptr(ptrs.get(k)) for k in ptr_slots])
    rc = getattr(lib, fn_name)(ip, pp)
    if rc != 0:
        raise RuntimeError(f"{fn_name} failed (code {rc}: out of memory or unsupported state size)")


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def lanes() -> int:
    """Channels per work item (the kernel's vector width W)."""
    return int(load().armv_lanes())


def threads() -> int:
    """Threads of a kernel call: torch's intra-op count (1 while backends/cpu.py's `time_fwd_orders` runs)."""
    return _state.get("threads") or max(1, torch.get_num_threads())
