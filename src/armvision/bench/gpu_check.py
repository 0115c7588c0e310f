"""GPU check in one command: scan correctness per backend, scan speed, ARM-B vs ViT-B, a short ARM-B pretraining run.

    python -m armvision.bench.gpu_check --out runs/gpu_check          # on a CUDA machine (under 6 minutes, H200)
    python -m armvision.bench.gpu_check --out /tmp/gc --dry-run       # anywhere: tiny shapes, CPU, seconds
    benchmarks/gpu_check.sh runs/gpu_check                            # the same, from a checkout

Sections (each in its own try/except: one failure is recorded and the rest still runs):
  1. correctness: every available selective-scan backend ("cuda" = mamba_ssm's kernel when importable, "triton",
     "torch" = the chunked PyTorch path) against the sequential reference, values and all gradients, fp32 and
     bf16, on the small cases of `armvision.ops.scan_check`.
  2. scan speed: forward and forward+backward at ARM-B's pretraining shape (batch 64, D 768, L 128, N 16, with z,
     D, delta_bias, softplus), per backend, timed with CUDA events; ratios between backends; and the 4-direction
     finetuning scan (batch 8, Dg 768, L 197, N 16) in one Triton launch vs 4 separate Triton calls.
  3. models: ARM-B classifier vs timm ViT-B at 224 px, batch 64, fp32 and bf16 autocast: forward images/s (eval,
     no grad), train-step images/s (forward + backward + AdamW), peak memory.
  4. pretraining: ARM-B pretrainer at 192 px on synthetic data, AdamW, bf16 autocast, a few warm-up steps then
     ~20 timed ones: steps/s, images/s, peak memory, and the ratio to the paper's budget (300 ImageNet-1k epochs in
     34 h: about 3,100 images/s in total).
Sections 1, 2 and 4 run first, section 3 last; once --budget-s (330 s) is spent the sections left are skipped.
The models run with the scan backend forced through env ARMVISION_SCAN_BACKEND (`--model-backend`, default
"triton"); when the dispatcher refuses it, the error is recorded and the run is repeated with the Triton scan
patched into armvision.nn.mamba, or else with the automatic choice. TF32 matmuls are on in sections 3-4 only.
Writes report.json (also after each section) and report.md to --out. Measured on an H200: docs/gpu_check_h200.md.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

PAPER_IMG_S = 1_281_167 * 300 / (34 * 3600)  # ARM-B: 300 epochs of ImageNet-1k in 34 h -> ~3,140 img/s in total
ENV_BACKEND = "ARMVISION_SCAN_BACKEND"
_T0 = time.perf_counter()


def spent() -> float:
    return time.perf_counter() - _T0


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------- helpers
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
    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device) -> Optional[float]:
    import torch

    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


@contextlib.contextmanager
def scan_backend(name: Optional[str]):
    """Force the models' scan backend through the environment variable (None: leave the automatic choice)."""
    old = os.environ.get(ENV_BACKEND)
    if name is None:
        os.environ.pop(ENV_BACKEND, None)
    else:
        os.environ[ENV_BACKEND] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_BACKEND, None)
        else:
            os.environ[ENV_BACKEND] = old


@contextlib.contextmanager
def triton_in_models():
    """Route the models' selective scan to the Triton kernels by patching `armvision.nn.mamba`'s reference to
    selective_scan_fn (for dispatchers that do not know backend "triton" yet); the conv keeps the automatic choice."""
    from ..nn import mamba
    from ..ops.triton_scan import selective_scan_triton

    orig = mamba.selective_scan_fn

    def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False,
             **_):
        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

    mamba.selective_scan_fn = scan
    try:
        with scan_backend(None):
            yield
    finally:
        mamba.selective_scan_fn = orig


def with_backend_fallback(run: Callable[[], dict], backend: Optional[str], notes: List[str]) -> dict:
    """run() with the backend forced through the environment; if that raises, record the error and, for "triton",
    run with the Triton scan patched into the models, else (or if that fails too) with the automatic choice."""
    try:
        with scan_backend(backend):
            r = run()
        r["scan_backend"] = backend or "auto"
        return r
    except Exception as e:
        if backend is None:
            raise
        err = f"{type(e).__name__}: {str(e)[:300]}"
        msg = f"forcing scan backend {backend!r} through {ENV_BACKEND} failed ({err})"
        if backend == "triton":
            try:
                with triton_in_models():
                    r = run()
                r["scan_backend"] = "triton (patched into nn.mamba)"
                r["forced_backend_error"] = err
                notes.append(msg + "; ran with the Triton scan patched into armvision.nn.mamba")
                log(notes[-1])
                return r
            except Exception as e2:
                msg += f"; patched Triton run failed too ({type(e2).__name__}: {str(e2)[:300]})"
        notes.append(msg + "; ran with 'auto'")
        log(notes[-1])
        with scan_backend(None):
            r = run()
        r["scan_backend"] = "auto"
        r["forced_backend_error"] = err
        return r


def scan_backends(device) -> Dict[str, Callable]:
    """Backends usable on `device`: name -> fn with selective_scan_fn's positional signature."""
    import torch

    from ..ops import selective_scan_fn as selective_scan_fn_
    from ..ops.triton_scan import selective_scan_triton, triton_available

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


# -------------------------------------------------------------------------------------------------- sections
def section_correctness(cfg: dict, report: dict) -> dict:
    import torch

    from ..ops import scan_check

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

    from .scan import make_inputs

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
    import torch

    from .scan import ARGS

    device, timer = cfg["device"], Timer(cfg["device"])
    shape = cfg["scan_shape"]
    res: Dict[str, object] = {"shape": dict(zip(("batch", "D", "L", "N"), shape)), "rows": [], "ratios": {}}
    for dname, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        inp = _scan_inputs(shape, dtype, device)
        args = [inp[k] for k in ARGS]
        gout = torch.randn(shape[0], shape[1], shape[2], device=device, dtype=dtype)
        for name, fn in scan_backends(device).items():
            row = {"backend": name, "dtype": dname}
            try:
                def fwd():
                    with torch.no_grad():
                        fn(*args, True, False)

                def fwd_bwd():
                    fn(*args, True, False).backward(gout)

                def clear():
                    for a in args:
                        a.grad = None

                reset_peak(device)
                row["fwd_ms"] = round(1000 * timer(fwd, cfg["scan_warmup"], cfg["scan_iters"])[0], 3)
                row["fwd_bwd_ms"] = round(1000 * timer(fwd_bwd, cfg["scan_warmup"], cfg["scan_iters"], clear)[0], 3)
                row["peak_mb"] = peak_mb(device)
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            res["rows"].append(row)
            log(f"scan {dname} {name}: {row}")
        del inp, args, gout
    if "triton" in scan_backends(device) and cfg["tune"]:
        res["triton_tuning"] = _triton_tuning(cfg, shape, timer)
    if "triton" in scan_backends(device) and cfg.get("groups_shape"):
        res["triton_groups"] = _triton_groups_timing(cfg, timer)
    by = {(r["backend"], r["dtype"]): r.get("fwd_bwd_ms") for r in res["rows"]}
    for dname in ("float32", "bfloat16"):
        for a, b in (("triton", "cuda"), ("torch", "triton"), ("torch", "cuda")):
            ta, tb = by.get((a, dname)), by.get((b, dname))
            if ta and tb:
                res["ratios"][f"{dname}: {a} / {b} (fwd+bwd time)"] = round(ta / tb, 3)
    return res


def _groups_orders(L: int, device):
    """The mixer's 4 scan orders for L = h * h + 1 (a square grid and a cls token at index 0), else
    forward, backward and two random permutations."""
    import math

    import torch

    h = math.isqrt(max(L - 1, 0))
    if h * h == L - 1 and h > 0:
        from ..nn.mamba import MambaMixer

        return MambaMixer(8, d_state=2, directions=4).scan_orders(L, (h, h), 0, device).to(torch.int32)
    g = torch.Generator().manual_seed(0)
    pos = torch.arange(L)
    return torch.stack([pos, pos.flip(0), torch.randperm(L, generator=g), torch.randperm(L, generator=g)]).to(
        device=device, dtype=torch.int32)


def _triton_groups_timing(cfg: dict, timer) -> dict:
    """The 4-direction finetuning scan (batch, Dg, L, N) = cfg["groups_shape"]: all directions in one Triton
    launch (armvision::selective_scan_groups_triton_fwd, + backward through autograd) against 4 separate
    selective_scan_triton calls on the same data (each direction's z already in its scan order; the
    separate path's gathers, flips and output sums are not timed, so the ratio favours it)."""
    import torch

    from ..ops import scan_op
    from ..ops.triton_scan import selective_scan_triton

    device = cfg["device"]
    batch, Dg, L, N = cfg["groups_shape"]
    G = 4
    res: Dict[str, object] = {"shape": {"G": G, "batch": batch, "Dg": Dg, "L": L, "N": N}, "rows": [], "ratios": {}}
    idx = _groups_orders(L, device)
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g)).to(device)

    for dname, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        u = rnd(G, batch, L, Dg).to(dtype)
        delta = rnd(G, batch, L, Dg, scale=0.5).to(dtype)
        x_dbl = rnd(G, batch, L, 2 * N + 48).to(dtype)  # B, C: slices of x_proj's output, as in the mixer
        B, C = x_dbl[..., 48:48 + N], x_dbl[..., 48 + N:]
        z = rnd(batch, L, 2 * Dg).to(dtype)[..., Dg:]  # the gate half of in_proj's output
        A = -torch.exp(rnd(G * Dg, N, scale=0.5))
        D, bias = rnd(G * Dg), rnd(G * Dg, scale=0.1)
        leaves = [t.detach().requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]
        gout = rnd(batch, L, Dg).to(dtype)
        # 4 separate calls: mamba_ssm layout (batch, Dg, L) views with contiguous channels
        z_g = [z[:, idx[k].long()] for k in range(G)]
        sep = []
        for k in range(G):
            sl = slice(k * Dg, (k + 1) * Dg)
            sep.append([t.detach().requires_grad_() for t in (
                u[k].transpose(1, 2), delta[k].transpose(1, 2), A[sl], B[k].transpose(1, 2), C[k].transpose(1, 2),
                D[sl], z_g[k].transpose(1, 2), bias[sl])])
        gout_t = gout.transpose(1, 2)

        def clear():
            for t in leaves + [t for a in sep for t in a]:
                t.grad = None

        def groups_fwd():
            with torch.no_grad():
                scan_op.selective_scan_groups_triton_fwd(*leaves, idx)

        def groups_fwd_bwd():
            scan_op.selective_scan_groups_triton_fwd(*leaves, idx)[0].backward(gout)

        def separate_fwd():
            with torch.no_grad():
                for a in sep:
                    selective_scan_triton(*a, delta_softplus=True)

        def separate_fwd_bwd():
            for a in sep:
                selective_scan_triton(*a, delta_softplus=True).backward(gout_t)

        for name, fwd, fwd_bwd in (("triton-groups (1 launch)", groups_fwd, groups_fwd_bwd),
                                   ("triton x4 (separate)", separate_fwd, separate_fwd_bwd)):
            row = {"impl": name, "dtype": dname}
            try:
                reset_peak(device)
                row["fwd_ms"] = round(1000 * timer(fwd, cfg["scan_warmup"], cfg["scan_iters"])[0], 3)
                row["fwd_bwd_ms"] = round(1000 * timer(fwd_bwd, cfg["scan_warmup"], cfg["scan_iters"], clear)[0], 3)
                row["peak_mb"] = peak_mb(device)
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            res["rows"].append(row)
            log(f"scan groups {dname}: {row}")
        by = {r["impl"]: r for r in res["rows"] if r["dtype"] == dname}
        a, b = by.get("triton-groups (1 launch)", {}), by.get("triton x4 (separate)", {})
        for key in ("fwd_ms", "fwd_bwd_ms"):
            if a.get(key) and b.get(key):
                res["ratios"][f"{dname}: groups / separate ({key[:-3]} time)"] = round(a[key] / b[key], 3)
        del u, delta, x_dbl, B, C, z, leaves, sep, z_g, gout, gout_t
    return res


def _triton_tuning(cfg: dict, shape, timer) -> List[dict]:
    """fwd+bwd time of the Triton scan (fp32 inputs) per (channels per program, warps, chunk)."""
    import torch

    from ..ops import triton_scan as ts
    from .scan import ARGS

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


def _build(family: str, cfg: dict):
    import armvision

    if family == "arm":
        return armvision.create_classifier(cfg["size"], num_classes=1000, img_size=cfg["img"], **cfg["arm_overrides"])
    if family == "vit":
        import timm

        return timm.create_model(cfg["vit_name"], pretrained=False, img_size=cfg["img"], num_classes=1000,
                                 **cfg["vit_overrides"])
    raise ValueError(family)


def _model_run(family: str, precision: str, cfg: dict) -> dict:
    import torch
    import torch.nn.functional as F

    device, timer = torch.device(cfg["device"]), Timer(cfg["device"])
    dtype = torch.bfloat16 if precision == "bf16" else None
    reset_peak(device)
    torch.manual_seed(0)
    model = _build(family, cfg).to(device)
    bs = cfg["model_batch"]
    x = torch.randn(bs, 3, cfg["img"], cfg["img"], device=device)
    y = torch.randint(0, 1000, (bs,), device=device)
    ac = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)  # noqa: E731
    row = {"model": family, "precision": precision, "batch": bs, "img": cfg["img"],
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    model.eval()

    def fwd():
        with torch.no_grad(), ac():
            model(x)

    t, _ = timer(fwd, cfg["model_warmup"], cfg["model_iters"])
    row["forward_img_s"] = round(bs / t, 1)
    row["forward_peak_mb"] = peak_mb(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def step():
        with ac():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    reset_peak(device)
    t, _ = timer(step, cfg["model_warmup"], cfg["model_iters"])
    row["train_img_s"] = round(bs / t, 1)
    row["train_peak_mb"] = peak_mb(device)
    del model, opt, x, y
    return row


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


def section_models(cfg: dict, report: dict) -> dict:
    with tf32(True):
        return _section_models(cfg, report)


def _section_models(cfg: dict, report: dict) -> dict:
    res: Dict[str, object] = {"rows": [], "notes": [], "ratios": {}, "tf32": True}
    for precision in ("fp32", "bf16"):
        for family in ("arm", "vit", "arm-auto"):
            if family == "arm-auto" and (not cfg["compare_auto"] or not cfg["model_backend"]
                                         or spent() > cfg["budget_s"] - 60):
                continue  # the automatic backend once more, for comparison (--compare-auto), when there is time
            try:
                if family == "arm":
                    row = with_backend_fallback(lambda: _model_run("arm", precision, cfg), cfg["model_backend"],
                                                res["notes"])
                elif family == "arm-auto":
                    with scan_backend(None):
                        row = _model_run("arm", precision, cfg)
                    row.update(model="arm", scan_backend="auto")
                else:
                    row = _model_run(family, precision, cfg)
            except Exception as e:
                row = {"model": family, "precision": precision, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            res["rows"].append(row)
            log(f"model {family} {precision}: {row}")
    by = {(r["model"], r["precision"]): r for r in res["rows"] if r.get("scan_backend") != "auto"
          or not cfg["model_backend"]}
    for precision in ("fp32", "bf16"):
        a, v = by.get(("arm", precision), {}), by.get(("vit", precision), {})
        for key in ("forward_img_s", "train_img_s"):
            if a.get(key) and v.get(key):
                res["ratios"][f"{precision} {key}: ARM / ViT"] = round(a[key] / v[key], 3)
    return res


def _pretrain_run(cfg: dict) -> dict:
    import torch

    import armvision

    device, timer = torch.device(cfg["device"]), Timer(cfg["device"])
    reset_peak(device)
    torch.manual_seed(0)
    model = armvision.create_pretrainer(cfg["size"], img_size=cfg["pre_img"], **cfg["pre_overrides"]).to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1.5e-4, betas=(0.9, 0.95),
                            weight_decay=0.05)
    bs = cfg["pre_batch"]
    gen = torch.Generator(device=device).manual_seed(0)
    batches = [torch.randn(bs, 3, cfg["pre_img"], cfg["pre_img"], device=device, generator=gen) for _ in range(2)]
    losses: List[float] = []
    it = [0]

    def step():
        x = batches[it[0] % 2]
        it[0] += 1
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    t0 = time.perf_counter()
    for _ in range(cfg["pre_warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(cfg["pre_steps"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    vals = [float(v) for v in losses]
    steps_s = cfg["pre_steps"] / wall
    row = {"batch": bs, "img": cfg["pre_img"], "steps": cfg["pre_steps"], "warmup_steps": cfg["pre_warmup"],
           "warmup_s": round(warm_s, 2), "seconds": round(wall, 3), "steps_s": round(steps_s, 3),
           "img_s": round(steps_s * bs, 1), "peak_mb": peak_mb(device),
           "loss_first": round(vals[0], 4), "loss_last": round(vals[-1], 4),
           "losses_finite": all(v == v and abs(v) != float("inf") for v in vals),
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "paper_budget_img_s_total": round(PAPER_IMG_S),
           "ratio_to_paper_budget": round(steps_s * bs / PAPER_IMG_S, 3),
           "gpus_for_paper_budget": round(PAPER_IMG_S / (steps_s * bs), 1)}
    del model, opt, batches
    return row


def section_pretrain(cfg: dict, report: dict) -> dict:
    notes: List[str] = []
    with tf32(True):
        row = with_backend_fallback(lambda: _pretrain_run(cfg), cfg["model_backend"], notes)
    row["notes"] = notes
    log(f"pretrain: {row}")
    return row


SECTIONS = (("correctness", section_correctness), ("scan_speed", section_scan_speed),
            ("pretrain", section_pretrain), ("models", section_models))  # pretraining before the longer models


# ---------------------------------------------------------------------------------------------------- config
def make_config(args: argparse.Namespace) -> dict:
    import torch

    device = "cuda" if (torch.cuda.is_available() and not args.dry_run) else "cpu"
    cfg = {"device": device, "size": "base", "model_backend": args.model_backend or None,
           "check_cases": None, "scan_shape": (64, 768, 128, 16), "scan_warmup": 3, "scan_iters": 10,
           "groups_shape": (8, 768, 197, 16),  # 4-direction finetuning: (batch, Dg, L, N)
           "img": 224, "model_batch": 64, "model_warmup": 2, "model_iters": 5, "vit_name": "vit_base_patch16_224",
           "arm_overrides": {}, "vit_overrides": {},
           "pre_img": 192, "pre_batch": args.pretrain_batch, "pre_warmup": 3, "pre_steps": args.pretrain_steps,
           "pre_overrides": {}, "budget_s": args.budget_s, "compare_auto": args.compare_auto,
           "tune": [(bd, w, 64) for bd in (8, 16, 32, 64) for w in (1, 2, 4)]
           + [(32, 2, c) for c in (16, 32, 128)]}
    if args.dry_run:  # tiny everything, on the CPU, Triton through its interpreter
        cfg.update(size="tiny", check_cases=["const-bare"],
                   scan_shape=(1, 8, 8, 4), scan_warmup=0, scan_iters=1, tune=[(4, 1, 4)], img=16, model_batch=1,
                   groups_shape=(1, 8, 5, 4),
                   model_warmup=0, model_iters=1, vit_name="vit_tiny_patch16_224",
                   arm_overrides=dict(embed_dim=32, depth=1, patch_size=8),
                   vit_overrides=dict(patch_size=8, depth=1, embed_dim=32, num_heads=2),
                   pre_img=32, pre_batch=2, pre_warmup=1, pre_steps=2,
                   pre_overrides=dict(embed_dim=32, depth=2, decoder_embed_dim=32, decoder_depth=1,
                                      decoder_num_heads=2, patch_size=8, cluster_size=2))
    return cfg


def environment(device: str) -> dict:
    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "device": device, "cuda": torch.version.cuda, "interpreter": os.environ.get("TRITON_INTERPRET", "")}
    for mod in ("triton", "timm", "mamba_ssm"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as e:
            env[mod] = f"absent ({type(e).__name__})"
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_mem_gb=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count)
    return env


# ---------------------------------------------------------------------------------------------------- report
def _table(rows: List[dict], cols: List[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    env = report["environment"]
    md = [f"# GPU check ({'dry run, ' if report['dry_run'] else ''}{env.get('gpu', env['device'])})", "",
          f"torch {env['torch']}, triton {env.get('triton')}, mamba_ssm {env.get('mamba_ssm')}, "
          f"timm {env.get('timm')}; "
          f"total {report['total_s']} s.", ""]
    s = report["sections"]
    c = s.get("correctness", {})
    md += ["## 1. Scan correctness against the sequential reference (values and all gradients)", ""]
    if "error" in c:
        md += [f"error: {c['error']}", ""]
    else:
        md += [_table([{"backend": k, **v} for k, v in c.get("backends", {}).items()],
                      ["backend", "checks", "failed", "seconds"]), ""]
        for k, v in c.get("backends", {}).items():
            for f in v["failures"]:
                md.append(f"- {k} FAILED {f['case']} ({f['dtype']}): {f['message']}")
        md += [f"- skipped: {x}" for x in c.get("skipped", [])] + [""]
    sp = s.get("scan_speed", {})
    md += ["## 2. Scan speed (fwd and fwd+bwd, ms, median)", ""]
    if "error" in sp:
        md += [f"error: {sp['error']}", ""]
    else:
        md += [f"shape: {sp.get('shape')}, with z, D, delta_bias, softplus; B, C (batch, N, L)", "",
               _table(sp.get("rows", []), ["backend", "dtype", "fwd_ms", "fwd_bwd_ms", "peak_mb", "error"]), ""]
        md += [f"- {k}: {v}" for k, v in sp.get("ratios", {}).items()] + [""]
        if sp.get("triton_tuning"):
            md += ["Triton, fp32 inputs, per channels per program, warps and chunk:", "",
                   _table(sp["triton_tuning"], ["block_d", "num_warps", "chunk", "fwd_ms", "fwd_bwd_ms", "error"]),
                   ""]
        tg = sp.get("triton_groups")
        if tg:
            md += [f"4-direction finetuning scan {tg.get('shape')}: one Triton launch for all directions vs 4 "
                   "separate Triton calls (fwd+bwd through autograd):", "",
                   _table(tg.get("rows", []), ["impl", "dtype", "fwd_ms", "fwd_bwd_ms", "peak_mb", "error"]), ""]
            md += [f"- {k}: {v}" for k, v in tg.get("ratios", {}).items()] + [""]
    m = s.get("models", {})
    md += ["## 3. ARM-B classifier vs ViT-B", ""]
    if "error" in m:
        md += [f"error: {m['error']}", ""]
    else:
        md += ["TF32 matmuls on for the fp32 rows.", "",
               _table(m.get("rows", []), ["model", "precision", "scan_backend", "batch", "img", "params_m",
                                          "forward_img_s", "train_img_s", "forward_peak_mb", "train_peak_mb",
                                          "error"]), ""]
        md += [f"- {k}: {v}" for k, v in m.get("ratios", {}).items()]
        md += [f"- note: {n}" for n in m.get("notes", [])] + [""]
    p = s.get("pretrain", {})
    md += ["## 4. ARM-B pretraining (synthetic data, AdamW, bf16 autocast)", ""]
    if "error" in p:
        md += [f"error: {p['error']}", ""]
    else:
        md += [_table([p], ["scan_backend", "batch", "img", "steps", "steps_s", "img_s", "peak_mb",
                            "ratio_to_paper_budget", "gpus_for_paper_budget", "loss_first", "loss_last"]), "",
               f"Paper budget: 300 epochs of ImageNet-1k in 34 h = {round(PAPER_IMG_S)} img/s in total."]
        md += [f"- note: {n}" for n in p.get("notes", [])] + [""]
    return "\n".join(md) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for report.json and report.md")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, Triton interpreted (seconds)")
    p.add_argument("--model-backend", default="triton",
                   help="scan backend forced (env ARMVISION_SCAN_BACKEND) in sections 3-4; '' = automatic")
    p.add_argument("--sections", default="correctness,scan_speed,models,pretrain")
    p.add_argument("--pretrain-batch", type=int, default=64)
    p.add_argument("--pretrain-steps", type=int, default=20)
    p.add_argument("--budget-s", type=float, default=330.0, help="skip the sections left once this is spent")
    p.add_argument("--compare-auto", action="store_true",
                   help="also time the ARM classifier with the automatic scan backend (on a GPU without mamba_ssm: "
                        "the chunked torch path, minutes at batch 64)")


def _rerun_interpreted(args: argparse.Namespace) -> Optional[int]:
    """Triton's interpreter needs TRITON_INTERPRET=1 before triton is first imported (torch and armvision may
    import it): for a dry run in a process that lacks it, run again in a fresh process that has it."""
    from ..ops.triton_scan import interpreter_enabled, triton_importable

    if not triton_importable() or interpreter_enabled():
        return None
    import subprocess

    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "armvision.bench.gpu_check", "--out", str(args.out), "--dry-run",
            "--model-backend", args.model_backend, "--sections", args.sections,
            "--pretrain-batch", str(args.pretrain_batch), "--pretrain-steps", str(args.pretrain_steps),
            "--budget-s", str(args.budget_s)] + (["--compare-auto"] if args.compare_auto else [])
    log("dry run: restarting with TRITON_INTERPRET=1 (needed before triton is imported)")
    return subprocess.run(argv, env=env).returncode


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        rc = _rerun_interpreted(args)
        if rc is not None:
            return rc
    import torch

    global _T0
    _T0 = t_start = time.perf_counter()
    cfg = make_config(args)
    if args.dry_run:
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"dry_run": bool(args.dry_run), "environment": environment(cfg["device"]),
              "config": {k: v for k, v in cfg.items()}, "sections": {}}
    log(f"device {cfg['device']}; {report['environment']}")
    wanted = [s for s in args.sections.split(",") if s]
    for name, fn in SECTIONS:
        if name not in wanted:
            continue
        spent = time.perf_counter() - t_start
        if spent > args.budget_s:
            report["sections"][name] = {"error": f"skipped: {spent:.0f} s spent, budget {args.budget_s:.0f} s"}
            log(report["sections"][name]["error"])
            continue
        log(f"section {name} ...")
        t = time.perf_counter()
        try:
            report["sections"][name] = fn(cfg, report)
        except Exception as e:
            report["sections"][name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            log(f"section {name} FAILED: {type(e).__name__}: {e}")
        report["sections"][name]["section_s"] = round(time.perf_counter() - t, 1)
        log(f"section {name} done in {time.perf_counter() - t:.1f}s")
        reset_peak(cfg["device"])
        report["total_s"] = round(time.perf_counter() - t_start, 1)
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))  # partial results survive
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))
    log(f"wrote {out / 'report.json'} and {out / 'report.md'} ({report['total_s']} s)")
    print(markdown(report), flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m armvision.bench.gpu_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
