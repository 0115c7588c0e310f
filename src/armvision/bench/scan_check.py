"""Correctness checks of any selective-scan implementation against the sequential reference: values and all
gradients, on a list of small cases covering every B/C form, the optional inputs, odd lengths and chunk
boundaries. Used by the Triton tests (CPU, interpreter mode, in a subprocess), by `armvision.bench.gpu_check` (on
the real device, for every backend) and by `armvision bench scan-check`.

    armvision bench scan-check --backend triton --device cpu --dtypes float32 --json      (= check_backend(...))
prints one JSON object per (case, dtype): {"case", "dtype", "ok", "errors": {tensor: max |diff|}, "message"}.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..ops import selective_scan_fn, selective_scan_ref

ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
# (rtol, atol) per input dtype, as mamba_ssm's tests for the half types
TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Case:
    name: str
    batch: int = 2
    dim: int = 12
    L: int = 33
    N: int = 4
    b_form: str = "shared"  # "const" (D, N), "shared" (batch, N, L), "groupsG" (batch, G, N, L)
    c_form: str = "shared"
    has_D: bool = True
    has_z: bool = True
    has_bias: bool = True
    softplus: bool = True
    last_state: bool = True
    chunk: Optional[int] = 16  # passed to backends that take `chunk` (triton); None = their default
    layout: str = "contiguous"  # "strided": u, delta, z, B, C as non-contiguous views


# Small shapes: cheap under Triton's interpreter (a few seconds in all), chunk boundaries crossed.
CASES: List[Case] = [
    Case("shared-all-options", L=17, chunk=8),
    Case("const-bare", L=7, b_form="const", c_form="const", has_D=False, has_z=False, has_bias=False,
         softplus=False, last_state=False, chunk=4),
    Case("groups-2-4", dim=16, L=20, b_form="groups2", c_form="groups4", chunk=8),
    Case("groups-odd-dpg", dim=20, L=19, b_form="groups4", c_form="shared", chunk=8),
    Case("const-B-shared-C-z-only", L=1, b_form="const", c_form="shared", has_D=False, has_bias=False,
         softplus=False),
    Case("shared-C-const-B-D-only", dim=9, L=13, b_form="shared", c_form="const", has_z=False, has_bias=False,
         chunk=5),
    Case("N1", dim=8, L=33, N=1, chunk=16),
    Case("N16", dim=8, L=18, N=16, chunk=8, b_form="groups2"),
    Case("L70-default-chunk", batch=1, dim=8, L=70, chunk=None),
    Case("chunk1", batch=1, dim=6, L=5, chunk=1),
    Case("chunk-over-L", dim=8, L=9, chunk=64),
    Case("strided", dim=10, L=17, chunk=8, layout="strided", b_form="groups2"),
    Case("L372", batch=1, dim=4, L=372, chunk=64, has_z=False),
]
HALF_CASES = ("shared-all-options", "const-bare")


def make_inputs(case: Case, dtype=torch.float32, device="cpu", seed: int = 0) -> Dict[str, Optional[torch.Tensor]]:
    """Inputs like a Mamba mixer's: A < 0, delta around softplus's knee (or small positive without softplus)."""
    g = torch.Generator().manual_seed(seed)
    b, d, L, N = case.batch, case.dim, case.L, case.N

    def bc(form):
        if form == "const":
            return torch.randn(d, N, generator=g)
        if form == "shared":
            return torch.randn(b, N, L, generator=g)
        G = int(form[len("groups"):])
        return torch.randn(b, G, N, L, generator=g)

    t = {
        "u": torch.randn(b, d, L, generator=g),
        "delta": (torch.randn(b, d, L, generator=g) * 0.5 - 1.0) if case.softplus
        else torch.rand(b, d, L, generator=g) * 0.2 + 0.01,
        "A": -(torch.rand(d, N, generator=g) * 2 + 0.2),
        "B": bc(case.b_form),
        "C": bc(case.c_form),
        "D": torch.randn(d, generator=g) if case.has_D else None,
        "z": torch.randn(b, d, L, generator=g) if case.has_z else None,
        "delta_bias": torch.randn(d, generator=g) * 0.3 if case.has_bias else None,
    }
    out = {}
    for k, v in t.items():
        if v is None:
            out[k] = None
            continue
        v = v.to(device=device, dtype=dtype if k in ("u", "delta", "z", "B", "C") else torch.float32)
        if case.layout == "strided" and v.dim() >= 3:  # same values, non-contiguous memory
            v = v.transpose(-1, -2).contiguous().transpose(-1, -2)
        out[k] = v.requires_grad_()
    return out


def _compare(name: str, got, want, rtol: float, atol: float) -> Optional[str]:
    if want is None:
        return None if got is None else f"{name}: expected no gradient, got one"
    if got is None:
        return f"{name}: missing (expected shape {tuple(want.shape)})"
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"{name}: shape/dtype {tuple(got.shape)}/{got.dtype}, expected {tuple(want.shape)}/{want.dtype}"
    g, w = got.detach().double(), want.detach().double()
    if not torch.isfinite(g).all():
        return f"{name}: non-finite values"
    bad = (g - w).abs() > atol * max(1.0, w.abs().max().item()) + rtol * w.abs()
    if bad.any():
        return f"{name}: {int(bad.sum())} of {bad.numel()} elements off, max |diff| {(g - w).abs().max().item():.3g}"
    return None


def check_case(fn: Callable, case: Case, dtype=torch.float32, device="cpu", takes_chunk: bool = False,
               seed: int = 0) -> dict:
    """Run `fn` (selective_scan_fn's signature) and the reference on the same inputs; compare out, last state
    and the gradients of every input. Returns a JSON-able dict."""
    t0 = time.perf_counter()
    rtol, atol = TOLERANCES[dtype]
    inp = make_inputs(case, dtype, device, seed)
    args = [inp[k] for k in ARG_NAMES]
    kw = {"chunk": case.chunk} if takes_chunk and case.chunk is not None else {}
    errors, messages = {}, []
    try:
        got = fn(*args, case.softplus, case.last_state, **kw)
        want = selective_scan_ref(*args, delta_softplus=case.softplus, return_last_state=case.last_state)
        got_o, got_s = (got if case.last_state else (got, None))
        want_o, want_s = (want if case.last_state else (want, None))
        g = torch.Generator().manual_seed(seed + 1)
        gout = torch.randn(want_o.shape, generator=g).to(device=device, dtype=want_o.dtype)
        loss_w = (want_o * gout).float().sum()
        loss_g = (got_o * gout).float().sum()
        if case.last_state:
            gs = torch.randn(want_s.shape, generator=g).to(device=device)
            loss_w = loss_w + (want_s * gs).sum()
            loss_g = loss_g + (got_s * gs).sum()
        live = [a for a in args if a is not None]
        gw = torch.autograd.grad(loss_w, live)
        gg = torch.autograd.grad(loss_g, live, allow_unused=True)
        pairs = [("out", got_o, want_o)] + ([("last_state", got_s, want_s)] if case.last_state else [])
        names = [n for n, a in zip(ARG_NAMES, args) if a is not None]
        pairs += [("d" + n, a, b) for n, a, b in zip(names, gg, gw)]
        for name, a, b in pairs:
            if a is not None and b is not None and a.shape == b.shape:
                errors[name] = float((a.detach().double() - b.detach().double()).abs().max())
            msg = _compare(name, a, b, rtol, atol)
            if msg:
                messages.append(msg)
    except Exception as e:  # a crash is a failed check, reported like one
        messages.append(f"{type(e).__name__}: {e}")
    return {"case": case.name, "dtype": str(dtype).replace("torch.", ""), "device": str(device),
            "ok": not messages, "errors": errors, "message": "; ".join(messages),
            "seconds": round(time.perf_counter() - t0, 3), "case_def": asdict(case)}


def run_checks(fn: Callable, device="cpu", dtypes: Sequence[torch.dtype] = (torch.float32,),
               cases: Optional[Sequence[Case]] = None, takes_chunk: bool = False, half_cases=HALF_CASES,
               log: Optional[Callable[[dict], None]] = None) -> List[dict]:
    """check_case over cases x dtypes (the half types only on `half_cases`)."""
    results = []
    for case in (CASES if cases is None else cases):
        for dtype in dtypes:
            if dtype != torch.float32 and half_cases is not None and case.name not in half_cases:
                continue
            r = check_case(fn, case, dtype, device, takes_chunk)
            results.append(r)
            if log:
                log(r)
    return results


def backend_fn(name: str) -> Callable:
    """A backend's scan function with selective_scan_fn's positional signature."""
    if name == "triton":
        from ..ops.backends.triton_scan import selective_scan_triton

        return selective_scan_triton
    if name == "torch":
        return lambda *a: selective_scan_fn(*a, backend="torch")
    if name == "cuda":
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_scan

        return mamba_scan
    if name == "ref":
        return selective_scan_ref
    raise ValueError(f"unknown backend {name!r}")


def check_backend(backend: str = "triton", device: str = "cpu", dtypes: Sequence[str] = ("float32",),
                  cases: Sequence[str] = (), max_block_d: Optional[int] = None, as_json: bool = False) -> bool:
    """run_checks on one backend ("triton", "torch", "cuda", "ref"), printing one line per check (a JSON object
    with as_json); `cases`: names (default: all, with the half types on HALF_CASES only). True when all pass."""
    if max_block_d:
        from ..ops.backends import triton_scan

        triton_scan.MAX_BLOCK_D = max_block_d
    chosen = [c for c in CASES if not cases or c.name in cases]

    def log(r: dict) -> None:
        print(json.dumps(r) if as_json else
              f"{'ok  ' if r['ok'] else 'FAIL'} {r['case']:<28} {r['dtype']:<9} {r['seconds']:7.2f}s {r['message']}",
              flush=True)

    results = run_checks(backend_fn(backend), device, [DTYPES[d] for d in dtypes], chosen,
                         takes_chunk=backend == "triton", half_cases=None if cases else HALF_CASES, log=log)
    return all(r["ok"] for r in results)
