"""Running one cell of the study through armvision's public entry points (train_pretrain, train_finetune,
probe_checkpoint) on its data view, timing its compute (process CPU time), and whether the options a cell needs
exist in this version of the library."""
from __future__ import annotations

import dataclasses
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any, Dict, Optional

from armvision.errors import ArmVisionError
from armvision.fields import config_from_dict
from armvision.eval import probe_checkpoint, read_log
from armvision.models import build_model
from armvision.train import FinetuneConfig, PretrainConfig, train_finetune, train_pretrain

from .plan import Cell, StudyPlan, Variant, finetune_steps_of, pretrain_steps_of
from .splits import data_root, view_name


@functools.lru_cache(maxsize=None)
def option_missing(method: str = "arm", block: Optional[str] = None) -> Optional[str]:
    """None if this library has `PretrainConfig(method=..., block=...)`, else why not (one line)."""
    try:
        config_from_dict(PretrainConfig, {"model": "tiny", "method": method, **({"block": block} if block else {})})
    except (ArmVisionError, TypeError, ValueError) as e:
        what = f'block="{block}"' if block else f'method="{method}"'
        return f"{what} is not available in this version of armvision ({str(e).splitlines()[0][:120]})"
    return None


def cell_missing(cell: Cell) -> Optional[str]:
    """Why `cell` cannot run with this library (an option it needs does not exist), or None."""
    v = cell.variant
    return option_missing(v.get("method", "arm") if v else "arm", v.get("block") or cell.scratch_block or None)


def _common(plan: StudyPlan, cell: Cell, out: Path, root: Path) -> Dict[str, Any]:
    """Settings shared by every training cell: the plan's backbone, device and precision, resumable, quiet, reading
    the cell's data view (splits.py)."""
    return dict(data=str(view_path(root, cell)), model="tiny", embed_dim=plan.embed_dim, depth=plan.depth,
                img_size=plan.img_size, patch_size=plan.patch_size, batch_size=plan.batch_size, epochs=100000,
                seed=cell.seed, num_workers=plan.num_workers, device=plan.device, output=str(out), resume="auto",
                save_every=50, log_every=5, progress=False, tensorboard=False, precision=plan.precision)


def view_path(root: Path, cell: Cell) -> Path:
    """The folder of the cell's data view (written by splits.prepare_views before the cells run)."""
    return data_root(root) / "views" / view_name(*cell.view)


class Clock:
    """Compute of one cell: process CPU time (all threads; a stopped process accrues none) and wall-clock. A cell
    resumed from a checkpoint counts its CPU time x total steps / steps run in this process (flagged "resumed")."""

    def __init__(self, log_path: Optional[Path] = None, steps: int = 0) -> None:
        rows = train_rows(log_path) if log_path is not None and log_path.exists() else []
        self.before = rows[-1]["step"] if rows else 0  # steps done by an earlier, interrupted process
        self.steps = steps
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def result(self) -> Dict[str, Any]:
        cpu, wall = time.process_time() - self.cpu, time.perf_counter() - self.wall
        out: Dict[str, Any] = {"seconds": wall, "cpu_seconds": cpu}
        if 0 < self.before < self.steps:
            out.update(cpu_seconds=cpu * self.steps / (self.steps - self.before), resumed=True)
        return out


def _block_keys(plan: StudyPlan, block: Optional[str]) -> Dict[str, Any]:
    """Model keywords of a block choice: nothing for the default, else the block and its depth (Vim: matched)."""
    if not block:
        return {}
    depth = (plan.vim_depth or vim_depth(plan)) if block == "vim" else plan.depth
    return {"block": block, "depth": depth}


def pretrain_config(plan: StudyPlan, cell: Cell, out: Path, root: Path, v: Optional[Variant] = None
                    ) -> PretrainConfig:
    """The PretrainConfig of a pretraining cell (or of variant `v` with the cell's seed)."""
    v = cell.variant if v is None else v
    method = v.get("method", "arm")
    kw: Dict[str, Any] = {**_common(plan, cell, out, root), "max_steps": pretrain_steps_of(plan, v),
                          "warmup_epochs": 1.0, "blr": plan.pretrain_blr, "decoder_embed_dim": plan.decoder_embed_dim,
                          "method": method,
                          "eval_every": 10**6}  # one validation loss, at the end: not one per epoch in the measured time
    if method == "arm":
        kw.update(cluster_size=v["cluster_size"], ordering=v["ordering"], order_seed=cell.seed,
                  decoder_depth=v["decoder_depth"], feature_layers=v.get("feature_layers"))
    elif method == "mae":
        kw.update(decoder_depth=plan.default_decoder_depth)
    if method == "contrastive":
        kw.pop("decoder_embed_dim")
    kw.update(_block_keys(plan, v.get("block")))
    return config_from_dict(PretrainConfig, kw, "study")


@functools.lru_cache(maxsize=None)
def _param_count(plan_key: str, block: Optional[str], depth: int) -> int:
    plan = StudyPlan(**json.loads(plan_key))
    kw = dict(model="tiny", embed_dim=plan.embed_dim, depth=depth, img_size=plan.img_size, patch_size=plan.patch_size,
              cluster_size=plan.default_cluster, decoder_embed_dim=plan.decoder_embed_dim,
              **({"block": block} if block else {}))
    return sum(p.numel() for p in build_model(config_from_dict(PretrainConfig, kw, "study").model).parameters())


def vim_depth(plan: StudyPlan) -> int:
    """The Vim depth whose ARM pretrainer has the parameter count closest to the MambaMLP one of the plan's depth."""
    key = json.dumps(dataclasses.asdict(plan), sort_keys=True)
    target = _param_count(key, None, plan.depth)
    return min(range(1, 4 * plan.depth + 1), key=lambda d: abs(_param_count(key, "vim", d) - target))


def train_rows(log_path: Path) -> list:
    """The training lines of a run's log.jsonl."""
    return [r for r in read_log(log_path) if r.get("kind") == "train"]


def step_seconds(log_path: Path) -> Optional[float]:
    """Median seconds per optimizer step between consecutive logged training lines (robust to a resumed run, whose
    own wall-clock would miss the steps before the interruption); None with fewer than two lines."""
    rows = train_rows(log_path)
    rates = [(b["time"] - a["time"]) / (b["step"] - a["step"]) for a, b in zip(rows, rows[1:]) if b["step"] > a["step"]]
    return statistics.median(rates) if rates else None


def _pretrain(plan: StudyPlan, cell: Cell, out: Path, root: Path) -> Dict[str, Any]:
    cfg = pretrain_config(plan, cell, out, root)
    steps = pretrain_steps_of(plan, cell.variant)
    clock = Clock(out / "log.jsonl", steps)
    summary = train_pretrain(cfg)
    res = {"loss": summary["loss"], **clock.result(), "images": steps * plan.batch_size, "steps": summary["step"],
           "step_seconds": step_seconds(out / "log.jsonl")}
    res["params"] = sum(p.numel() for p in build_model(cfg.model).parameters())
    res["depth"] = cfg.model.depth
    return res


def _finetune(plan: StudyPlan, cell: Cell, out: Path, root: Path) -> Dict[str, Any]:
    init = str(root / "cells" / cell.init_name / "checkpoint-last.pth") if cell.init_name else None
    block = cell.variant.get("block") if cell.variant else cell.scratch_block
    steps = finetune_steps_of(plan, cell.fraction)
    cfg = config_from_dict(FinetuneConfig, dict(
        **{**_common(plan, cell, out, root), **_block_keys(plan, block)},
        max_steps=steps, warmup_epochs=1.0, blr=plan.finetune_blr, init=init,
        label_fraction=1.0,  # the view's train/ is already this seed's labelled subset
        layer_decay=0.75, drop_path=0.1, ema=False, mixup=0.0, cutmix=0.0, smoothing=0.1,
        auto_augment=None, reprob=0.0, min_scale=0.6, hflip=0.0,
        eval_every=10**6), "study")  # one evaluation, at the end
    clock = Clock(out / "log.jsonl", steps)
    summary = train_finetune(cfg)
    m = summary["metrics"]
    return {"top1": m["acc1"], "top5": m.get("acc5"), **clock.result(), "steps": steps,
            "labelled": _count(view_path(root, cell) / "train"), "evaluated": _count(view_path(root, cell) / "val")}


def _count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if not p.is_dir())


def _probe(plan: StudyPlan, cell: Cell, root: Path) -> Dict[str, Any]:
    ckpt = root / "cells" / str(cell.init_name) / "checkpoint-last.pth"
    clock = Clock()
    rec = probe_checkpoint(str(ckpt), data=str(view_path(root, cell)), epochs=plan.probe_epochs,
                           batch_size=plan.batch_size, device=plan.device, num_workers=plan.num_workers,
                           progress=False)
    return {"knn": rec["knn"]["top1"], "linear": rec["linear"]["top1"], **clock.result()}


def run_cell(plan: StudyPlan, cell: Cell, root: Path) -> Dict[str, Any]:
    """Run one cell in root/cells/NAME -> its result (pretrain: loss, seconds, cpu_seconds, images, steps, params;
    finetune: top1, top5, seconds, cpu_seconds, labelled and evaluated images; probe: knn, linear, seconds,
    cpu_seconds). The cell's data view must exist (splits.prepare_views)."""
    root = Path(root)
    out = root / "cells" / cell.name
    if cell.kind == "pretrain":
        return _pretrain(plan, cell, out, root)
    if cell.kind == "probe":
        return _probe(plan, cell, root)
    return _finetune(plan, cell, out, root)
