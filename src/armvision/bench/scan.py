"""`armvision bench scan`: time and memory of the selective scan implementations on ARM's shapes.

Rows: the fused CPU kernel (on CPU) or Triton (on CUDA), our chunked PyTorch path (eager, and torch.compile'd
with --compile), our sequential reference, mambapy's
parallel scan (`mambapy.pscan.pscan`, wrapped the way mambapy's own `selective_scan` uses it), mamba_ssm's
`selective_scan_ref` and CUDA kernel when importable. All rows compute the same function (Mamba's setting:
delta_softplus, delta_bias, D, z gating) from the same inputs; `err` is the max relative error against our reference.

Memory ("peak extra"): the peak, during one forward+backward, of bytes allocated by torch beyond what was live
before it started. On CUDA: torch.cuda.max_memory_allocated. On CPU: the running sum of the allocation/free
events recorded by torch.profiler(profile_memory=True), in time order. "saved" is the size of the tensors kept
for backward (torch.autograd.graph.saved_tensors_hooks), i.e. what a training step holds per scan call.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..ops import available_backends, cpu_kernel, selective_scan_fn, selective_scan_ref, selective_scan_torch
from ..ops.backends.cuda import kernel as cuda_kernel
from ..ops.backends.torch_scan import DEFAULT_CHUNK
from .common import cpu_name, sync
from .machine import count_cycles, isa_line

# name -> (batch, D, L, N, note)
SHAPES = {
    "pretrain-B": (8, 768, 128, 16, "ARM-B pretraining: 8 clusters x 16 patches, one direction"),
    "pretrain-L": (8, 1024, 128, 16, "ARM-L width"),
    "pretrain-H": (8, 1536, 128, 16, "ARM-H width"),
    "finetune-B": (32, 768, 197, 16, "finetuning at 224: 196 patches + cls, 4 directions x batch 8"),
    "tiny": (2, 16, 24, 4, "smoke test"),
}
DEFAULT_SHAPES = ("pretrain-B", "pretrain-L", "pretrain-H", "finetune-B")
QUICK_SHAPES = ("tiny",)


def make_inputs(batch: int, dim: int, L: int, N: int, dtype=torch.float32, device="cpu", seed: int = 0) -> dict:
    """Inputs distributed like a freshly initialised Mamba mixer's (dt in [1e-3, 0.1], A = -(1..N), D = 1)."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(dim, generator=g) * (torch.log(torch.tensor(0.1)) - torch.log(torch.tensor(1e-3)))
                   + torch.log(torch.tensor(1e-3)))
    t = {
        "u": torch.randn(batch, dim, L, generator=g),
        "delta": torch.randn(batch, dim, L, generator=g) * 0.5,
        "A": -torch.arange(1, N + 1, dtype=torch.float32).repeat(dim, 1),
        "B": torch.randn(batch, N, L, generator=g),
        "C": torch.randn(batch, N, L, generator=g),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, L, generator=g),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus
    }
    return {k: v.to(device=device, dtype=dtype).requires_grad_() for k, v in t.items()}


ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def mambapy_scan(u, delta, A, B, C, D, z, delta_bias):
    """The same selective scan built around mambapy's parallel scan, as mambapy's `selective_scan` does it."""
    from mambapy.pscan import pscan

    x = u.transpose(1, 2)  # (b, L, D)
    dt = F.softplus((delta + delta_bias[None, :, None]).transpose(1, 2))  # (b, L, D)
    deltaA = torch.exp(dt.unsqueeze(-1) * A)  # (b, L, D, N)
    BX = dt.unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2) * x.unsqueeze(-1)  # (b, L, D, N)
    hs = pscan(deltaA, BX)  # (b, L, D, N)
    y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(3) + D * x  # (b, L, D)
    return (y * F.silu(z.transpose(1, 2))).transpose(1, 2)  # (b, D, L)


@dataclass
class Method:
    name: str
    fn: Optional[Callable]
    note: str = ""


def backend(name: str) -> Callable:
    return lambda *a: selective_scan_fn(*a, delta_softplus=True, backend=name)


def methods(device: str, chunk_size: Optional[int] = None, compile: bool = False) -> List[Method]:
    """The implementations to time on `device`; those not available here have fn None and say why."""
    def ours(compile_: bool):
        return lambda *a: selective_scan_torch(*a, delta_softplus=True, chunk_size=chunk_size, compile=compile_)

    def chunk(compile_: bool) -> str:
        return f"chunk {chunk_size or DEFAULT_CHUNK[compile_]}"

    out = []
    if device == "cpu":
        if "cpu" in available_backends():
            out.append(Method("fast: fused CPU kernel", backend("cpu"), "C, channels as vector lanes, states in registers"))
        else:
            out.append(Method("fast: fused CPU kernel", None, f"unavailable: {cpu_kernel.unavailable_reason()}"))
    elif "triton" in available_backends():
        out.append(Method("fast: Triton", backend("triton"), "one program per (batch, channel block)"))
    out.append(Method("torch chunked (eager)", ours(False), chunk(False) + "; the pure-PyTorch fallback"))
    if compile:
        out.append(Method("torch chunked (torch.compile)", ours(True), chunk(True) + ", step kernels compiled"))
    out.append(Method("reference (ours)", lambda *a: selective_scan_ref(*a, delta_softplus=True),
                      "sequential; same math as mamba_ssm's selective_scan_ref"))
    try:
        import mambapy.pscan  # noqa: F401

        out.append(Method("mambapy pscan", mambapy_scan, "Blelloch scan over (b, L, D, N)"))
    except ImportError:
        out.append(Method("mambapy pscan", None, "not installed (pip install mambapy)"))
    mref = _mamba_ssm_ref()
    if mref is not None:
        out.append(Method("mamba_ssm selective_scan_ref", lambda *a: mref(*a, delta_softplus=True),
                          "mamba_ssm's own sequential reference"))
    else:
        out.append(Method("mamba_ssm selective_scan_ref", None,
                          "not installed; 'reference (ours)' follows the same math and stands in for it"))
    kernel = cuda_kernel("selective_scan")
    if device.startswith("cuda") and kernel is not None:
        out.append(Method("mamba_ssm CUDA kernel", lambda *a: kernel(*a, delta_softplus=True), ""))
    return out


def _mamba_ssm_ref():
    """mamba_ssm's `selective_scan_ref`, if the package is installed, even on a machine without its CUDA build.

    A CPU-only install (MAMBA_SKIP_CUDA_BUILD=TRUE) has no `selective_scan_cuda` extension, and the package's
    `__init__` pulls in transformers: for this benchmark only, the extension gets an empty stand-in module (never
    called: only the pure-PyTorch reference is timed) and the package is entered without running its `__init__`.
    """
    import importlib
    import importlib.util
    import sys
    import types

    try:
        spec = importlib.util.find_spec("mamba_ssm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    added = []
    if importlib.util.find_spec("selective_scan_cuda") is None:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
        added.append("selective_scan_cuda")
    if "mamba_ssm" not in sys.modules:
        pkg = types.ModuleType("mamba_ssm")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["mamba_ssm"] = pkg
        added.append("mamba_ssm")
    try:
        return importlib.import_module("mamba_ssm.ops.selective_scan_interface").selective_scan_ref
    except Exception:
        for name in added:
            sys.modules.pop(name, None)
        return None


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _timed(fn: Callable[[], None], device: str, warmup: int, repeats: int, clock: str = "wall") -> float:
    """Median seconds of fn() on `clock`: "wall", or "cpu" (this process's CPU time: with --threads 1, robust to
    other processes sharing the cores, which otherwise stall multi-threaded ops)."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = now()
        fn()
        sync(device)
        times.append(now() - t0)
    return statistics.median(times)


def peak_extra_bytes(fn: Callable[[], None], device: str) -> int:
    """Peak bytes allocated by torch during fn() beyond what was live before (see module docstring)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for backward during fn() (each storage counted once)."""
    seen: Dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def measure(method: Method, inputs: dict, ref_out: torch.Tensor, device: str, warmup: int, repeats: int,
            clock: str = "wall") -> dict:
    args = [inputs[k] for k in ARGS]
    params = [inputs[k] for k in ARGS]
    gout = torch.randn_like(ref_out)

    def fwd():
        return method.fn(*args)

    def fwd_bwd():
        out = method.fn(*args)
        torch.autograd.grad(out, params, gout)

    out = fwd().detach()
    err = ((out.double() - ref_out.double()).abs().max() / ref_out.double().abs().max()).item()
    del out
    for _ in range(warmup):  # forward and backward (a compiled path compiles both here)
        fwd_bwd()
    cycles = count_cycles(fwd) if device == "cpu" and method.name.startswith("fast") else None
    return {
        "cycles_fwd": cycles,
        "fwd_s": _timed(fwd, device, 0, repeats, clock),
        "fwd_bwd_s": _timed(fwd_bwd, device, 0, repeats, clock),
        "peak_bytes": peak_extra_bytes(fwd_bwd, device),
        "saved_bytes": saved_bytes(fwd),
        "err": err,
    }


def _fmt_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"


def render(shape: str, rows: List[dict]) -> str:
    batch, dim, L, N, _ = SHAPES[shape]
    updates = batch * dim * L * N  # (channel, state, step) updates of one scan
    head = ["method", "fwd ms", "fwd+bwd ms", "fwd ns/update", "fwd+bwd ns/update", "peak extra MiB",
            "saved MiB", "err vs ref", "note"]
    body = []
    for r in rows:
        if r.get("fwd_s") is None:
            body.append([r["name"], "-", "-", "-", "-", "-", "-", "-", r["note"]])
        else:
            body.append([r["name"], f"{r['fwd_s'] * 1e3:.1f}", f"{r['fwd_bwd_s'] * 1e3:.1f}",
                         f"{r['fwd_s'] * 1e9 / updates:.3f}", f"{r['fwd_bwd_s'] * 1e9 / updates:.3f}",
                         f"{r['peak_bytes'] / 2**20:.1f}", f"{r['saved_bytes'] / 2**20:.1f}", f"{r['err']:.1e}",
                         r["note"]])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = [_fmt_row(head, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_fmt_row(b, widths) for b in body]
    fast = [r for r in rows if r["name"].startswith("fast") and r.get("fwd_s") is not None]
    for f in fast:
        cyc = f.get("cycles_fwd")
        lines.append(f"  {f['name']}: forward {cyc / updates:.2f} CPU cycles per update (perf events)" if cyc else
                     f"  {f['name']}: cycles per update not available here (no hardware cycle counter)")
        for base in rows:
            if base["name"].startswith("fast") or base.get("fwd_s") is None:
                continue
            lines.append(f"  {f['name']} vs {base['name']}: fwd {base['fwd_s'] / f['fwd_s']:.1f}x faster, "
                         f"fwd+bwd {base['fwd_bwd_s'] / f['fwd_bwd_s']:.1f}x faster, "
                         f"peak memory {f['peak_bytes'] / max(base['peak_bytes'], 1):.2f}x of it")
    return "\n".join(lines)


def run_scan_bench(shapes: Optional[Sequence[str]] = None, quick: bool = False, warmup: int = 1, repeats: int = 5,
                   chunk: Optional[int] = None, compile: bool = False, skip: Sequence[str] = (), device: str = "cpu",
                   dtype: str = "float32", clock: str = "wall") -> None:
    """Time every implementation on each shape (default: DEFAULT_SHAPES; quick: the tiny one, 1 warm-up, 2 repeats)
    and print one table per shape. Methods whose name contains a word of `skip` are listed but not run."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"bench scan: --device {device} but CUDA is not available here; use --device cpu")
    shapes = shapes or (QUICK_SHAPES if quick else DEFAULT_SHAPES)
    warmup, repeats = (1, 2) if quick else (warmup, repeats)
    if repeats < 1:
        raise ConfigError(f"bench scan: --repeats must be >= 1, got {repeats}")
    print(f"# {isa_line()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}"
          f", {os.cpu_count()} CPUs, device {device}, {dtype}, warm-up {warmup}, median of {repeats}"
          f", {clock} clock"
          + (f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""))
    for shape in shapes:
        batch, dim, L, N, note = SHAPES[shape]
        inputs = make_inputs(batch, dim, L, N, getattr(torch, dtype), device)
        with torch.no_grad():
            ref_out = selective_scan_ref(*[inputs[k] for k in ARGS], delta_softplus=True)
        rows = []
        for m in methods(device, chunk, compile):
            if m.fn is None or any(word in m.name for word in skip):
                rows.append({"name": m.name, "note": m.note if m.fn is None else "skipped (--skip)"})
                continue
            rows.append({"name": m.name, "note": m.note, **measure(m, inputs, ref_out, device, warmup, repeats, clock)})
        print(f"\n{shape}: batch {batch}, D {dim}, L {L}, N {N} ({note})")
        print(render(shape, rows), flush=True)
