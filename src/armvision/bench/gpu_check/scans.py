"""Sections 1 and 2 of the GPU check: scan correctness per backend against the sequential reference, and scan speed
(per backend, Triton tuning, the 4-direction scan in one Triton launch vs 4 calls)."""
from __future__ import annotations

import time
from typing import Callable, Dict, List

from .common import Timer, log, peak_mb, reset_peak


def scan_backends(device) -> Dict[str, Callable]:
    """Backends usable on `device`: name -> fn with selective_scan_fn's positional signature."""
    import torch

    from ...ops import selective_scan_fn as selective_scan_fn_
    from ...ops.backends.triton_scan import selective_scan_triton, triton_available

    out: Dict[str, Callable] = {}
    if torch.device(device).type == "cuda":
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

            out["cuda"] = selective_scan_fn
        except Exception:
            pass
    if triton_available(torch.device(device)):
        out["triton"] = selective_scan_triton
    out["torch"] = lambda *a: selective_scan_fn_(*a, backend="torch")  # through the dispatcher (validation, forms)
    return out


def section_correctness(cfg: dict, report: dict) -> dict:
    """Section 1: every available backend against the reference, fp32 and bf16, values and gradients."""
    import torch

    from .. import scan_check

    device = cfg["device"]
    res: Dict[str, object] = {"backends": {}, "skipped": []}
    backends = scan_backends(device)
    if "cuda" not in backends:
        res["skipped"].append("cuda: mamba_ssm not importable" if torch.device(device).type == "cuda"
                              else "cuda: no CUDA device")
    if "triton" not in backends:
        res["skipped"].append("triton: not available on this device")
    cases = [c for c in scan_check.CASES if c.name in cfg["check_cases"]] if cfg["check_cases"] else None
    dtypes = [torch.float32, torch.bfloat16]
    for name, fn in backends.items():
        t = time.perf_counter()
        rows = scan_check.run_checks(fn, device, dtypes, cases, takes_chunk=name == "triton")
        bad = [r for r in rows if not r["ok"]]
        res["backends"][name] = {
            "checks": len(rows), "failed": len(bad), "seconds": round(time.perf_counter() - t, 1),
            "failures": [{"case": r["case"], "dtype": r["dtype"], "message": r["message"]} for r in bad],
            "max_err": {f"{r['case']}/{r['dtype']}": max(r["errors"].values(), default=0.0) for r in rows},
        }
        log(f"correctness {name}: {len(rows) - len(bad)}/{len(rows)} passed ({time.perf_counter() - t:.1f}s)"
            + "".join(f"\n    FAIL {r['case']} {r['dtype']}: {r['message']}" for r in bad))
    return res


def _scan_inputs(shape, dtype, device):
    import torch

    from ..scan import make_inputs

    batch, dim, L, N = shape
    t = make_inputs(batch, dim, L, N, device=device)
    out = {}
    for k, v in t.items():
        v = v.detach()
        if k in ("u", "delta", "z", "B", "C"):
            v = v.to(dtype)
        out[k] = v.requires_grad_()
    return out


def section_scan_speed(cfg: dict, report: dict) -> dict:
    """Section 2: fwd and fwd+bwd time per backend and dtype, Triton tuning and the 4-direction timing."""
    import torch

    from ..scan import ARGS

    device, timer = cfg["device"], Timer(cfg["device"])
    shape = cfg["scan_shape"]
    res: Dict[str, object] = {"shape": dict(zip(("batch", "D", "L", "N"), shape)), "rows": [], "ratios": {}}
    for dname, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        inp = _scan_inputs(shape, dtype, device)
        args = [inp[k] for k in ARGS]
        gout = torch.randn(shape[0], shape[1], shape[2], device=device, dtype=dtype)
        for name, fn in scan_backends(device).items():
            def fwd():
                with torch.no_grad():
                    fn(*args, True, False)

            def fwd_bwd():
                fn(*args, True, False).backward(gout)

            def clear():
                for a in args:
                    a.grad = None

            row = _time_row({"backend": name, "dtype": dname}, fwd, fwd_bwd, clear, cfg, timer)
            res["rows"].append(row)
            log(f"scan {dname} {name}: {row}")
        del inp, args, gout
    if "triton" in scan_backends(device) and cfg["tune"]:
        res["triton_tuning"] = _triton_tuning(cfg, shape, timer)
    if "triton" in scan_backends(device) and cfg.get("directions_shape"):
        res["triton_directions"] = _triton_directions_timing(cfg, timer)
    by = {(r["backend"], r["dtype"]): r.get("fwd_bwd_ms") for r in res["rows"]}
    for dname in ("float32", "bfloat16"):
        for a, b in (("triton", "cuda"), ("torch", "triton"), ("torch", "cuda")):
            ta, tb = by.get((a, dname)), by.get((b, dname))
            if ta and tb:
                res["ratios"][f"{dname}: {a} / {b} (fwd+bwd time)"] = round(ta / tb, 3)
    return res


def _direction_orders(L: int, device):
    """The mixer's 4 scan orders for L = h * h + 1 (a square grid and a cls token at index 0), else
    forward, backward and two random permutations."""
    import math

    import torch

    h = math.isqrt(max(L - 1, 0))
    if h * h == L - 1 and h > 0:
        from ...nn.mamba import MambaMixer

        return MambaMixer(8, d_state=2, directions=4).scan_orders(L, (h, h), 0, device).to(torch.int32)
    g = torch.Generator().manual_seed(0)
    pos = torch.arange(L)
    return torch.stack([pos, pos.flip(0), torch.randperm(L, generator=g), torch.randperm(L, generator=g)]).to(
        device=device, dtype=torch.int32)


def _time_row(row: dict, fwd: Callable, fwd_bwd: Callable, clear: Callable, cfg: dict, timer) -> dict:
    """Fill `row` with fwd_ms, fwd_bwd_ms (medians) and peak_mb, or with the error that stopped them."""
    try:
        reset_peak(cfg["device"])
        row["fwd_ms"] = round(1000 * timer(fwd, cfg["scan_warmup"], cfg["scan_iters"])[0], 3)
        row["fwd_bwd_ms"] = round(1000 * timer(fwd_bwd, cfg["scan_warmup"], cfg["scan_iters"], clear)[0], 3)
        row["peak_mb"] = peak_mb(cfg["device"])
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    return row


def _directions_inputs(dtype, shape, idx, g, device, G: int = 4):
    """Leaves of the one-launch op (u, delta, A, B, C, D, z, bias), the 4 separate calls' leaves in mamba_ssm
    layout (batch, Dg, L) with each direction's z in its scan order, and output gradients for both."""
    import torch

    batch, Dg, L, N = shape

    def rnd(*s, scale=1.0):
        return (scale * torch.randn(*s, generator=g)).to(device)

    u = rnd(G, batch, L, Dg).to(dtype)
    delta = rnd(G, batch, L, Dg, scale=0.5).to(dtype)
    x_dbl = rnd(G, batch, L, 2 * N + 48).to(dtype)  # B, C: slices of x_proj's output, as in the mixer
    B, C = x_dbl[..., 48:48 + N], x_dbl[..., 48 + N:]
    z = rnd(batch, L, 2 * Dg).to(dtype)[..., Dg:]  # the gate half of in_proj's output
    A = -torch.exp(rnd(G * Dg, N, scale=0.5))
    D, bias = rnd(G * Dg), rnd(G * Dg, scale=0.1)
    leaves = [t.detach().requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]
    gout = rnd(batch, L, Dg).to(dtype)
    sep = []
    for k in range(G):
        sl, z_k = slice(k * Dg, (k + 1) * Dg), z[:, idx[k].long()]
        sep.append([t.detach().requires_grad_() for t in (
            u[k].transpose(1, 2), delta[k].transpose(1, 2), A[sl], B[k].transpose(1, 2), C[k].transpose(1, 2),
            D[sl], z_k.transpose(1, 2), bias[sl])])
    return leaves, sep, gout, gout.transpose(1, 2)


def _one_launch(*args):
    """All directions in one Triton launch: the custom op armvision::selective_scan_directions_fwd on "triton"."""
    from ...ops import custom_ops

    return custom_ops.selective_scan_directions_fwd(*args, 1.0, True, "triton")[0]


def _triton_directions_timing(cfg: dict, timer) -> dict:
    """The 4-direction finetuning scan (batch, Dg, L, N) = cfg["directions_shape"]: all directions in one Triton
    launch (armvision::selective_scan_directions_fwd, + backward through autograd) against 4 separate
    selective_scan_triton calls on the same data (each direction's z already in its scan order; the
    separate path's gathers, flips and output sums are not timed, so the ratio favours it)."""
    import torch

    from ...ops.backends.triton_scan import selective_scan_triton

    device, shape = cfg["device"], cfg["directions_shape"]
    res: Dict[str, object] = {"shape": dict(zip(("G", "batch", "Dg", "L", "N"), (4, *shape))), "rows": [],
                              "ratios": {}}
    idx = _direction_orders(shape[2], device)
    g = torch.Generator(device="cpu").manual_seed(0)
    for dname, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        leaves, sep, gout, gout_t = _directions_inputs(dtype, shape, idx, g, device)

        def clear():
            for t in leaves + [t for a in sep for t in a]:
                t.grad = None

        def one_fwd():
            with torch.no_grad():
                _one_launch(*leaves, idx)

        def one_fwd_bwd():
            _one_launch(*leaves, idx).backward(gout)

        def separate_fwd():
            with torch.no_grad():
                for a in sep:
                    selective_scan_triton(*a, delta_softplus=True)

        def separate_fwd_bwd():
            for a in sep:
                selective_scan_triton(*a, delta_softplus=True).backward(gout_t)

        res.setdefault("agreement", {})[dname] = _directions_agreement(leaves, sep, idx, gout, gout_t)
        log(f"scan directions {dname}: one launch vs separate calls {res['agreement'][dname]}")
        for name, fwd, fwd_bwd in (("triton-directions (1 launch)", one_fwd, one_fwd_bwd),
                                   ("triton x4 (separate)", separate_fwd, separate_fwd_bwd)):
            res["rows"].append(_time_row({"impl": name, "dtype": dname}, fwd, fwd_bwd, clear, cfg, timer))
            log(f"scan directions {dname}: {res['rows'][-1]}")
        by = {r["impl"]: r for r in res["rows"] if r["dtype"] == dname}
        a, b = by.get("triton-directions (1 launch)", {}), by.get("triton x4 (separate)", {})
        for key in ("fwd_ms", "fwd_bwd_ms"):
            if a.get(key) and b.get(key):
                res["ratios"][f"{dname}: one launch / separate ({key[:-3]} time)"] = round(a[key] / b[key], 3)
        del leaves, sep, gout, gout_t
    return res


def _directions_agreement(leaves, sep, idx, gout, gout_t) -> dict:
    """Largest difference, relative to the largest value, between the one-launch op and the 4 separate Triton
    calls (their outputs put back at each step's raster position and summed) in the output and in du, ddelta and
    dA: what decides whether ARMVISION_TRITON_DIRECTIONS=1 may become the GPU default."""
    import torch

    from ...ops.backends.triton_scan import selective_scan_triton

    def rel(a, b) -> float:
        a, b = a.detach().float(), b.detach().float()
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))

    try:
        for t in leaves + [t for a in sep for t in a]:
            t.grad = None
        out = _one_launch(*leaves, idx)
        out.backward(gout)
        total = torch.zeros_like(out, dtype=torch.float32)
        for k, a in enumerate(sep):
            y = selective_scan_triton(*a, delta_softplus=True)
            y.backward(gout_t[:, :, idx[k].long()])
            total[:, idx[k].long()] += y.detach().float().transpose(1, 2)
        G = len(sep)
        res = {"out": rel(out, total)}
        for name, i in (("du", 0), ("ddelta", 1)):
            res[name] = max(rel(leaves[i].grad[k], sep[k][i].grad.transpose(1, 2)) for k in range(G))
        res["dA"] = rel(leaves[2].grad, torch.cat([a[2].grad for a in sep]))
        return {k: float(f"{v:.2e}") for k, v in res.items()}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}


def _triton_tuning(cfg: dict, shape, timer) -> List[dict]:
    """fwd+bwd time of the Triton scan (fp32 inputs) per (channels per program, warps, chunk)."""
    import torch

    from ...ops.backends import triton_scan as ts
    from ..scan import ARGS

    device = cfg["device"]
    inp = _scan_inputs(shape, torch.float32, device)
    args = [inp[k] for k in ARGS]
    gout = torch.randn(shape[0], shape[1], shape[2], device=device)
    saved = ts.MAX_BLOCK_D, ts.TILE_ELEMS, ts.NUM_WARPS
    rows = []
    try:
        for block_d, warps, chunk in cfg["tune"]:
            ts.MAX_BLOCK_D, ts.TILE_ELEMS, ts.NUM_WARPS = block_d, 1 << 20, warps
            row = {"block_d": block_d, "num_warps": warps, "chunk": chunk}
            try:
                def fwd():
                    with torch.no_grad():
                        ts.selective_scan_triton(*args, True, False, chunk)

                def fwd_bwd():
                    ts.selective_scan_triton(*args, True, False, chunk).backward(gout)

                row["fwd_ms"] = round(1000 * timer(fwd, 2, cfg["scan_iters"])[0], 3)
                row["fwd_bwd_ms"] = round(1000 * timer(fwd_bwd, 2, cfg["scan_iters"])[0], 3)
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            rows.append(row)
            log(f"triton tuning {row}")
    finally:
        ts.MAX_BLOCK_D, ts.TILE_ELEMS, ts.NUM_WARPS = saved
    return rows
