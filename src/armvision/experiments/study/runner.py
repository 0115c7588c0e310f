"""Running the study's cells through armvision.train's public entry points; results.json and REPORT.md at the end.

Each finished cell leaves `cells/NAME/result.json` (written atomically: a cell counts as finished only once that
file exists) and is not rerun; an interrupted cell resumes from its last checkpoint (resume="auto").
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict

from armvision.errors import ConfigError
from armvision.fileio import atomic_write
from armvision.train import FinetuneConfig, PretrainConfig, train_finetune, train_pretrain

from .plan import Cell, StudyPlan, plan_cells, variant_name
from .report import write_report


def _common(plan: StudyPlan, cell: Cell, out: Path) -> Dict[str, Any]:
    """Settings shared by every cell: the plan's tiny backbone, CPU, fp32, resumable, quiet."""
    return dict(data=plan.data, model="tiny", embed_dim=plan.embed_dim, depth=plan.depth, img_size=plan.img_size,
                patch_size=plan.patch_size, batch_size=plan.batch_size, epochs=1000, seed=cell.seed,
                num_workers=0, device="cpu", output=str(out), resume="auto", save_every=50, log_every=5,
                progress=False, tensorboard=False, precision="fp32")


def _pretrain(plan: StudyPlan, cell: Cell, out: Path) -> Dict[str, Any]:
    v = cell.variant
    cfg = PretrainConfig(**_common(plan, cell, out), max_steps=plan.pretrain_steps, warmup_epochs=1.0,
                         blr=plan.pretrain_blr, decoder_embed_dim=plan.decoder_embed_dim,
                         method=v.get("method", "arm"), cluster_size=v.get("cluster_size", plan.default_cluster),
                         ordering=v.get("ordering", "row"), order_seed=cell.seed,
                         decoder_depth=v.get("decoder_depth", plan.default_decoder_depth))
    start = time.perf_counter()
    summary = train_pretrain(cfg)
    seconds = time.perf_counter() - start
    images = plan.pretrain_steps * plan.batch_size
    return {"loss": summary["loss"], "seconds": seconds, "images": images, "steps": summary["step"]}


def _finetune(plan: StudyPlan, cell: Cell, out: Path, root: Path) -> Dict[str, Any]:
    init = str(root / "cells" / cell.init_name / "checkpoint-last.pth") if cell.init_name else None
    cfg = FinetuneConfig(**_common(plan, cell, out), max_steps=plan.finetune_steps, warmup_epochs=1.0,
                         blr=plan.finetune_blr, init=init, label_fraction=cell.fraction, layer_decay=0.75,
                         drop_path=0.1, ema=False, mixup=0.0, cutmix=0.0, smoothing=0.1, auto_augment=None,
                         reprob=0.0, min_scale=0.6, hflip=0.0, eval_every=10**6)  # one evaluation, at the end
    start = time.perf_counter()
    summary = train_finetune(cfg)
    m = summary["metrics"]
    return {"top1": m["acc1"], "top5": m.get("acc5"), "seconds": time.perf_counter() - start}


def run_cell(plan: StudyPlan, cell: Cell, root: Path) -> Dict[str, Any]:
    """Train one cell in root/cells/NAME -> its result (pretrain: loss, seconds, images, steps; finetune: top1...)."""
    out = root / "cells" / cell.name
    return _pretrain(plan, cell, out) if cell.kind == "pretrain" else _finetune(plan, cell, out, root)


def _claim(plan: StudyPlan, root: Path) -> None:
    """Write root/plan.json, refusing a folder that holds a study with another plan."""
    root.mkdir(parents=True, exist_ok=True)
    plan_path = root / "plan.json"
    plan_dict = dataclasses.asdict(plan)
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        if old != plan_dict:
            raise ConfigError(f"{root} holds a study with another plan ({plan_path}); use another --output or delete it")
    plan_path.write_text(json.dumps(plan_dict, indent=2) + "\n")


def _short(res: Dict[str, Any]) -> str:
    if res["kind"] == "pretrain":
        return f"loss {res['loss']:.4f} in {res['seconds']:.1f}s"
    return f"top-1 {res['top1']:.2f}% in {res['seconds']:.1f}s"


def run_study(plan: StudyPlan, root: Path, command: str = "", log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run every unfinished cell, then write results.json, the plots and REPORT.md. Returns the results."""
    root = Path(root)
    _claim(plan, root)
    cells = plan_cells(plan)
    results: Dict[str, Any] = {}
    t0 = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        done = root / "cells" / cell.name / "result.json"
        if done.exists():
            results[cell.name] = json.loads(done.read_text())
            log(f"[{i}/{len(cells)}] {cell.name}: done earlier")
            continue
        log(f"[{i}/{len(cells)}] {cell.name} ... (elapsed {time.perf_counter() - t0:.0f}s)")
        res = run_cell(plan, cell, root)
        res.update(kind=cell.kind, seed=cell.seed, fraction=cell.fraction, group=cell.group,
                   variant=variant_name(cell.variant) if cell.variant else "scratch")
        done.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(done, json.dumps(res, indent=2) + "\n")  # a cell counts as finished only once this file exists
        results[cell.name] = res
        log(f"    -> {_short(res)}")
    (root / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_report(plan, results, root, command)
    return results


def finished_results(root: Path) -> Dict[str, Any]:
    """The results of the finished cells under root/cells (for rewriting the report alone)."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(root).glob("cells/*/result.json"))}
