"""`armvision study --curves`: measure how long the tiny model must train, to choose the study's budgets.

Two curves, each a series of separate runs whose lengths double (every run has its own full warmup + cosine
schedule, so each point is what a study cell of that length would reach):
- finetuning from scratch (the supervised baseline), final top-1 on the selection split (never on the held-out test
  split that judges the claims; splits.py) per label fraction;
- pretraining (ARM and MAE), final training loss (mean of the logged losses of the last 10 % of the steps).

Plateau rule, fixed before looking: a length L is enough when doubling it changes the metric by less than the
tolerance (finetuning: top-1 gain < `acc_tol` points, mean over the curve's seeds; pretraining: loss falls by less
than `loss_tol` of its value). The chosen length is the shortest enough one for every fraction / method; if none
is, the longest measured, flagged "not converged".
"""
from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from armvision.fileio import atomic_write

from .cells import train_rows
from .plan import Cell, StudyPlan, arm_variant, method_variant
from .report import curve_rows
from .runner import Log, Task, _claim, execute, prepare_data


MODEL_KEYS = ("data", "selection_fraction", "device", "img_size", "patch_size", "embed_dim", "depth",
              "decoder_embed_dim", "batch_size", "pretrain_blr", "finetune_blr", "default_cluster", "default_ordering",
              "default_decoder_depth")


@dataclass
class CurvePlan:
    """Lengths (optimizer steps) to measure, and the plateau tolerances."""

    finetune_lengths: List[int] = field(default_factory=lambda: [100, 200, 400, 800])
    pretrain_lengths: List[int] = field(default_factory=lambda: [200, 400, 800])
    fractions: Optional[List[float]] = None  # None: the study plan's label fractions
    methods: List[str] = field(default_factory=lambda: ["arm", "mae"])
    seeds: List[int] = field(default_factory=lambda: [0])
    acc_tol: float = 1.0  # top-1 points
    loss_tol: float = 0.02  # relative

    @classmethod
    def quick(cls) -> "CurvePlan":
        return cls(finetune_lengths=[4, 8], pretrain_lengths=[4, 8], fractions=[1.0], methods=["arm"])


def curve_tasks(plan: StudyPlan, curves: CurvePlan) -> List[Task]:
    """One cell per (length, fraction or method, seed), each with the study plan at that length."""
    tasks: List[Task] = []
    for seed in curves.seeds:
        for m in curves.methods:
            v = arm_variant(plan) if m == "arm" else method_variant(m)
            for n in curves.pretrain_lengths:
                tasks.append((dataclasses.replace(plan, pretrain_steps=n),
                              Cell("pretrain", f"curve-pretrain-{m}-n{n}-s{seed}", seed, v, group=f"curve:{m}:{n}")))
        for f in curves.fractions or plan.label_fractions:
            for n in curves.finetune_lengths:
                tasks.append((dataclasses.replace(plan, finetune_steps=n, low_label_finetune_steps=n),
                              Cell("finetune", f"curve-finetune-f{f:g}-n{n}-s{seed}", seed, {}, f,
                                   group=f"curve:f{f:g}:{n}", split="selection")))
    return tasks


def final_loss(rows: List[Dict[str, Any]]) -> float:
    """Mean training loss of the last 10 % (at least one) of a run's logged training lines."""
    losses = [r["loss"] for r in rows if "loss" in r]
    tail = losses[-max(1, len(losses) // 10):]
    return float(statistics.mean(tail))


def plateau(points: List[Tuple[int, float]], tol: float, relative: bool) -> Tuple[int, bool]:
    """(chosen length, converged) by the rule above; points (length, metric) with lengths ascending. For a relative
    tolerance the metric is a loss (lower is better), else an accuracy (higher is better)."""
    for (n, a), (_, b) in zip(points, points[1:]):
        change = (a - b) / abs(a) if relative else b - a
        if change < tol:
            return n, True
    return points[-1][0], False


def _series(cells: Dict[str, Any], key: str) -> Dict[str, List[Tuple[int, float]]]:
    """group label -> [(length, mean metric over seeds)] from the curve cells."""
    acc: Dict[Tuple[str, int], List[float]] = {}
    for r in cells.values():
        _, label, n = r["group"].split(":")
        if r.get(key) is not None:
            acc.setdefault((label, int(n)), []).append(r[key])
    out: Dict[str, List[Tuple[int, float]]] = {}
    for (label, n), vals in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        out.setdefault(label, []).append((n, statistics.mean(vals)))
    return out


def choose(cells: Dict[str, Any], curves: CurvePlan) -> Dict[str, Any]:
    """The budgets the rule picks from the measured cells (and the per-series choices)."""
    out: Dict[str, Any] = {"finetune": {}, "pretrain": {}}
    for label, pts in _series(cells, "top1").items():
        out["finetune"][label] = dict(zip(("steps", "converged"), plateau(pts, curves.acc_tol, False)), points=pts)
    for label, pts in _series(cells, "final_loss").items():
        out["pretrain"][label] = dict(zip(("steps", "converged"), plateau(pts, curves.loss_tol, True)), points=pts)
    groups = {"pretrain_steps": out["pretrain"].values(),
              "finetune_steps": [c for f, c in out["finetune"].items() if f == "f1"],
              "low_label_finetune_steps": [c for f, c in out["finetune"].items() if f != "f1"]}
    for key, chosen in groups.items():
        if chosen:
            out[key] = max(c["steps"] for c in chosen)
            out[key.replace("steps", "converged")] = all(c["converged"] for c in chosen)
    return out


def run_curves(plan: StudyPlan, curves: CurvePlan, root: Path, jobs: int = 1, log: Log = print,
               draw: bool = True) -> Dict[str, Any]:
    """Run the curve cells under root/curves (resumable), write curves.json, CURVES.md and curves.png there."""
    root = Path(root) / "curves"
    _claim({k: getattr(plan, k) for k in MODEL_KEYS}, root, "model.json")  # lengths may grow; the model may not change
    tasks = curve_tasks(plan, curves)
    prepare_data(tasks, root)
    cells, skipped = execute(tasks, root, jobs, log)
    for name, r in cells.items():
        if r["kind"] == "pretrain" and "final_loss" not in r:
            rows = train_rows(root / "cells" / name / "log.jsonl")
            r["final_loss"] = final_loss(rows)
            r["curve"] = [(x["step"], x["loss"]) for x in rows]
    doc = {"curve_plan": dataclasses.asdict(curves), "cells": cells, "skipped": skipped,
           "choice": choose(cells, curves)}
    atomic_write(root / "curves.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    atomic_write(root / "CURVES.md", curves_markdown(doc))
    if draw:
        from .plots import curves_plot

        curves_plot(doc, root / "curves.png")
    return doc


def curves_markdown(doc: Dict[str, Any]) -> str:
    """The measurement and the budgets it picks, as Markdown (from curves.json only)."""
    cp, ch = doc["curve_plan"], doc["choice"]
    lines = ["# Budget curves", "", f"Plateau rule: a length is enough when doubling it gains less than "
             f"{cp['acc_tol']:g} top-1 points (finetuning from scratch) or lowers the final pretraining loss by less "
             f"than {cp['loss_tol']:.0%}; seeds {cp['seeds']}.", "",
             "| curve | steps: metric | chosen | converged |", "|---|---|---|---|"] + curve_rows(ch, with_metric=True)
    if not all(ch.get(k, True) for k in ("pretrain_converged", "finetune_converged", "low_label_finetune_converged")):
        lines += ["", "Not converged means no measured doubling met the rule: the chosen length is only the longest "
                  "measured; add longer lengths to find the plateau."]
    picks = [f"{what} {ch[key]} steps" for key, what in (("pretrain_steps", "pretraining"),
                                                         ("finetune_steps", "finetuning with all labels"),
                                                         ("low_label_finetune_steps", "finetuning with a fraction "
                                                                                      "of the labels"))
             if ch.get(key) is not None]  # only the budgets the curves measured
    lines += ["", f"Chosen: {', '.join(picks) or 'nothing (no curve measured)'}.", "", "![curves](curves.png)", ""]
    return "\n".join(lines)
