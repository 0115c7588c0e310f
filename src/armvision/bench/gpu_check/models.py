"""Sections 3 and 4 of the GPU check: ARM-B classifier vs ViT-B (forward and train-step images/s, peak memory), and
a short ARM-B pretraining run on synthetic data."""
from __future__ import annotations

import time
from typing import Dict, List

from .common import PAPER_IMG_S, Timer, log, peak_mb, reset_peak, spent, tf32, with_backend_fallback

ONE_LAUNCH_ROW = "arm, one-launch mixer"


def _build(family: str, cfg: dict, backend: str):
    from ...models import create_classifier

    if family == "arm":
        return create_classifier(cfg["size"], num_classes=1000, img_size=cfg["img"], scan_backend=backend,
                                 **cfg["arm_overrides"])
    if family == "vit":
        import timm

        return timm.create_model(cfg["vit_name"], pretrained=False, img_size=cfg["img"], num_classes=1000,
                                 **cfg["vit_overrides"])
    raise ValueError(family)


def model_run(family: str, precision: str, cfg: dict, backend: str = "auto") -> dict:
    """Forward and train-step images/s and peak memory of one model (ARM on scan backend `backend`)."""
    import torch
    import torch.nn.functional as F

    device, timer = torch.device(cfg["device"]), Timer(cfg["device"])
    dtype = torch.bfloat16 if precision == "bf16" else None
    reset_peak(device)
    torch.manual_seed(0)
    model = _build(family, cfg, backend).to(device)
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


def section_models(cfg: dict, report: dict) -> dict:
    with tf32(True):
        return _section_models(cfg, report)


def _section_models(cfg: dict, report: dict) -> dict:
    res: Dict[str, object] = {"rows": [], "notes": [], "ratios": {}, "tf32": True}
    for precision in ("fp32", "bf16"):
        for family in ("arm", "vit", "arm-auto", ONE_LAUNCH_ROW):
            if family == "arm-auto" and (not cfg["compare_auto"] or not cfg["model_backend"]
                                         or spent() > cfg["budget_s"] - 60):
                continue  # the automatic backend once more, for comparison (--compare-auto), when there is time
            if family == ONE_LAUNCH_ROW and (cfg["device"] != "cuda" or spent() > cfg["budget_s"] - 60):
                continue  # on CUDA the mixer's one-launch Triton path is opt-in until measured: measure it here
            try:
                if family == ONE_LAUNCH_ROW:
                    row = one_launch_row(precision, cfg)
                elif family == "arm":
                    row = with_backend_fallback(lambda b: model_run("arm", precision, cfg, b), cfg["model_backend"],
                                                res["notes"])
                elif family == "arm-auto":
                    row = model_run("arm", precision, cfg, "auto")
                    row.update(model="arm", scan_backend="auto")
                else:
                    row = model_run(family, precision, cfg)
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
            one = by.get((ONE_LAUNCH_ROW, precision), {})
            if a.get(key) and one.get(key):
                res["ratios"][f"{precision} {key}: one-launch mixer / per-direction"] = round(one[key] / a[key], 3)
    return res


def _pretrain_run(cfg: dict, backend: str) -> dict:
    import torch

    from ...models import create_pretrainer

    device, timer = torch.device(cfg["device"]), Timer(cfg["device"])
    reset_peak(device)
    torch.manual_seed(0)
    model = create_pretrainer(cfg["size"], img_size=cfg["pre_img"], scan_backend=backend,
                              **cfg["pre_overrides"]).to(device)
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

    def steps(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    warm_s = steps(cfg["pre_warmup"])
    wall = steps(cfg["pre_steps"])
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
        row = with_backend_fallback(lambda b: _pretrain_run(cfg, b), cfg["model_backend"], notes)
    row["notes"] = notes
    log(f"pretrain: {row}")
    return row


def one_launch_row(precision: str, cfg: dict) -> dict:
    """The ARM row on the Triton backend with the mixer's directions in one launch. That needs
    ARMVISION_TRITON_DIRECTIONS=1, read from the environment (armvision.env), so the row runs in a child process
    started with it (`python -m armvision.bench.gpu_check.one_launch`), never by changing this process's
    environment."""
    import json
    import os
    import subprocess
    import sys

    from ... import env

    child_env = dict(os.environ, PYTHONUNBUFFERED="1", **{env.TRITON_DIRECTIONS: "1"})
    p = subprocess.run([sys.executable, "-m", "armvision.bench.gpu_check.one_launch", precision],
                       input=json.dumps(cfg), env=child_env, capture_output=True, text=True)
    rows = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode or not rows:
        raise RuntimeError(f"the one-launch child process failed (exit {p.returncode}): {p.stderr.strip()[-300:]}")
    return {**json.loads(rows[-1]), "model": ONE_LAUNCH_ROW, "scan_backend": "triton"}
