"""Running the GPU check: its options, the configuration of each section (full size or --dry-run), the sections in
order within the time budget, report.json after each section and report.md at the end."""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .common import log, reset_peak, start_clock
from .models import section_models, section_pretrain
from .report import environment, markdown
from .scans import section_correctness, section_scan_speed

SECTIONS = (("correctness", section_correctness), ("scan_speed", section_scan_speed),
            ("pretrain", section_pretrain), ("models", section_models))  # pretraining before the longer models


@dataclass
class GpuCheckOptions:
    """What `python -m armvision.bench.gpu_check` takes (see its --help)."""

    out: str
    dry_run: bool = False
    model_backend: str = "triton"  # "" = the automatic choice
    sections: str = "correctness,scan_speed,models,pretrain"
    pretrain_batch: int = 64
    pretrain_steps: int = 20
    budget_s: float = 330.0
    compare_auto: bool = False

    def argv(self) -> list[str]:
        """The same options as command-line flags."""
        return (["--out", str(self.out)] + (["--dry-run"] if self.dry_run else [])
                + ["--model-backend", self.model_backend, "--sections", self.sections,
                   "--pretrain-batch", str(self.pretrain_batch), "--pretrain-steps", str(self.pretrain_steps),
                   "--budget-s", str(self.budget_s)] + (["--compare-auto"] if self.compare_auto else []))


def make_config(opts: GpuCheckOptions) -> dict:
    """Shapes, batches and iteration counts of every section: ARM-B on CUDA, or tiny on the CPU for a dry run."""
    import torch

    device = "cuda" if (torch.cuda.is_available() and not opts.dry_run) else "cpu"
    cfg = {"device": device, "size": "base", "model_backend": opts.model_backend or None,
           "check_cases": None, "scan_shape": (64, 768, 128, 16), "scan_warmup": 3, "scan_iters": 10,
           "directions_shape": (8, 768, 197, 16),  # 4-direction finetuning: (batch, Dg, L, N)
           "img": 224, "model_batch": 64, "model_warmup": 2, "model_iters": 5, "vit_name": "vit_base_patch16_224",
           "arm_overrides": {}, "vit_overrides": {},
           "pre_img": 192, "pre_batch": opts.pretrain_batch, "pre_warmup": 3, "pre_steps": opts.pretrain_steps,
           "pre_overrides": {}, "budget_s": opts.budget_s, "compare_auto": opts.compare_auto,
           "tune": [(bd, w, 64) for bd in (8, 16, 32, 64) for w in (1, 2, 4)]
           + [(32, 2, c) for c in (16, 32, 128)]}
    if opts.dry_run:  # tiny everything, on the CPU, Triton through its interpreter
        cfg.update(size="tiny", check_cases=["const-bare"],
                   scan_shape=(1, 8, 8, 4), scan_warmup=0, scan_iters=1, tune=[(4, 1, 4)], img=16, model_batch=1,
                   directions_shape=(1, 8, 5, 4),
                   model_warmup=0, model_iters=1, vit_name="vit_tiny_patch16_224",
                   arm_overrides=dict(embed_dim=32, depth=1, patch_size=8),
                   vit_overrides=dict(patch_size=8, depth=1, embed_dim=32, num_heads=2),
                   pre_img=32, pre_batch=2, pre_warmup=1, pre_steps=2,
                   pre_overrides=dict(embed_dim=32, depth=2, decoder_embed_dim=32, decoder_depth=1,
                                      decoder_num_heads=2, patch_size=8, cluster_size=2))
    return cfg


def _rerun_interpreted(opts: GpuCheckOptions) -> Optional[int]:
    """Triton's interpreter needs TRITON_INTERPRET=1 before triton is first imported (torch and armvision may
    import it): for a dry run in a process that lacks it, run again in a fresh process that has it."""
    from ...ops.backends.triton_scan import interpreter_enabled, triton_importable

    if not triton_importable() or interpreter_enabled():
        return None
    import subprocess

    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONUNBUFFERED="1")
    log("dry run: restarting with TRITON_INTERPRET=1 (needed before triton is imported)")
    return subprocess.run([sys.executable, "-m", "armvision.bench.gpu_check", *opts.argv()], env=env).returncode


def _run_section(name: str, fn, cfg: dict, report: dict) -> None:
    """One section into report["sections"][name]; a failure is recorded with its traceback, not raised."""
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


def run_gpu_check(opts: GpuCheckOptions) -> int:
    """Run the wanted sections within opts.budget_s, write report.json (after each section too) and report.md to
    opts.out, print the markdown; returns 0 (failures are in the report)."""
    if opts.dry_run:
        rc = _rerun_interpreted(opts)
        if rc is not None:
            return rc
    import torch

    start_clock()
    t_start = time.perf_counter()
    cfg = make_config(opts)
    if opts.dry_run:
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"dry_run": bool(opts.dry_run), "environment": environment(cfg["device"]),
              "config": dict(cfg), "sections": {}}
    log(f"device {cfg['device']}; {report['environment']}")
    wanted = [s for s in opts.sections.split(",") if s]
    for name, fn in SECTIONS:
        if name not in wanted:
            continue
        spent = time.perf_counter() - t_start
        if spent > opts.budget_s:
            report["sections"][name] = {"error": f"skipped: {spent:.0f} s spent, budget {opts.budget_s:.0f} s"}
            log(report["sections"][name]["error"])
            continue
        _run_section(name, fn, cfg, report)
        report["total_s"] = round(time.perf_counter() - t_start, 1)
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))  # partial results survive
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))
    log(f"wrote {out / 'report.json'} and {out / 'report.md'} ({report['total_s']} s)")
    print(markdown(report), flush=True)
    return 0
