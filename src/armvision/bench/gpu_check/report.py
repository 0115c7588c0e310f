"""The GPU check's report: the environment record and report.md."""
from __future__ import annotations

import os
import platform
from typing import List

from .common import PAPER_IMG_S


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


def _table(rows: List[dict], cols: List[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _correctness_md(c: dict) -> List[str]:
    md = [_table([{"backend": k, **v} for k, v in c.get("backends", {}).items()],
                 ["backend", "checks", "failed", "seconds"]), ""]
    for k, v in c.get("backends", {}).items():
        for f in v["failures"]:
            md.append(f"- {k} FAILED {f['case']} ({f['dtype']}): {f['message']}")
    return md + [f"- skipped: {x}" for x in c.get("skipped", [])] + [""]


def _ratios(sec: dict) -> List[str]:
    return [f"- {k}: {v}" for k, v in sec.get("ratios", {}).items()]


def _scan_speed_md(sp: dict) -> List[str]:
    md = [f"shape: {sp.get('shape')}, with z, D, delta_bias, softplus; B, C (batch, N, L)", "",
          _table(sp.get("rows", []), ["backend", "dtype", "fwd_ms", "fwd_bwd_ms", "peak_mb", "error"]), ""]
    md += _ratios(sp) + [""]
    if sp.get("triton_tuning"):
        md += ["Triton, fp32 inputs, per channels per program, warps and chunk:", "",
               _table(sp["triton_tuning"], ["block_d", "num_warps", "chunk", "fwd_ms", "fwd_bwd_ms", "error"]), ""]
    tg = sp.get("triton_directions")
    if tg:
        md += [f"4-direction finetuning scan {tg.get('shape')}: one Triton launch for all directions vs 4 "
               "separate Triton calls (fwd+bwd through autograd):", "",
               _table(tg.get("rows", []), ["impl", "dtype", "fwd_ms", "fwd_bwd_ms", "peak_mb", "error"]), ""]
        md += _ratios(tg)
        md += [f"- agreement, {d} (max difference / max value, one launch vs separate): {a}"
               for d, a in tg.get("agreement", {}).items()] + [""]
    return md


def _models_md(m: dict) -> List[str]:
    md = ["TF32 matmuls on for the fp32 rows.", "",
          _table(m.get("rows", []), ["model", "precision", "scan_backend", "batch", "img", "params_m", "forward_img_s",
                                     "train_img_s", "forward_peak_mb", "train_peak_mb", "error"]), ""]
    return md + _ratios(m) + [f"- note: {n}" for n in m.get("notes", [])] + [""]


def _pretrain_md(p: dict) -> List[str]:
    md = [_table([p], ["scan_backend", "batch", "img", "steps", "steps_s", "img_s", "peak_mb", "ratio_to_paper_budget",
                       "gpus_for_paper_budget", "loss_first", "loss_last"]), "",
          f"Paper budget: 300 epochs of ImageNet-1k in 34 h = {round(PAPER_IMG_S)} img/s in total."]
    return md + [f"- note: {n}" for n in p.get("notes", [])] + [""]


SECTION_MD = (("correctness", "## 1. Scan correctness against the sequential reference (values and all gradients)",
               _correctness_md),
              ("scan_speed", "## 2. Scan speed (fwd and fwd+bwd, ms, median)", _scan_speed_md),
              ("models", "## 3. ARM-B classifier vs ViT-B", _models_md),
              ("pretrain", "## 4. ARM-B pretraining (synthetic data, AdamW, bf16 autocast)", _pretrain_md))


def markdown(report: dict) -> str:
    """report.md: the environment line, then one part per section (its error, if it failed)."""
    env = report["environment"]
    md = [f"# GPU check ({'dry run, ' if report['dry_run'] else ''}{env.get('gpu', env['device'])})", "",
          f"torch {env['torch']}, triton {env.get('triton')}, mamba_ssm {env.get('mamba_ssm')}, "
          f"timm {env.get('timm')}; "
          f"total {report['total_s']} s.", ""]
    for name, title, body in SECTION_MD:
        sec = report["sections"].get(name, {})
        md += [title, ""] + ([f"error: {sec['error']}", ""] if "error" in sec else body(sec))
    return "\n".join(md) + "\n"
