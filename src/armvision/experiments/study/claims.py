"""The paper's claims as data, and the comparisons that test them (computed from results.json only).

Paper numbers: Ren et al., "Autoregressive Pretraining with Mamba in Vision" (ICLR 2025, arXiv 2406.07537), abstract
and ablation section, as summarised in the project's implementation spec (ARM_SPEC.md). Where the paper
gives a direction but no number we have, the text says so. `PAPER` is written into results.json by the run, so the
report reads the paper's side from there too.
"""
from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional, Tuple

from .plan import StudyPlan, _unique, arm_variant, method_label, method_variant, variant_name
from .stats import ALPHA, MIN_SEEDS, Welch, verdict, welch

SOURCE = "Ren et al., Autoregressive Pretraining with Mamba in Vision, ICLR 2025 (arXiv 2406.07537)"
PAPER: Dict[str, Dict[str, Any]] = {  # claim key -> the paper's statement and number; direction: +1 A > B, 0 A = B
    "scratch": {"claim": "ARM pretraining beats supervised training from scratch", "direction": 1,
                "number": "83.2 vs 81.2 top-1 (ARM-B vs MambaMLP-B supervised, ImageNet-1K)"},
    "scratch_low": {"claim": "ARM pretraining beats training from scratch with 10 % of the labels", "direction": 1,
                    "number": "not reported (the paper finetunes on all labels)"},
    "mae": {"claim": "ARM beats MAE pretraining of the same backbone", "direction": 1,
            "number": "ARM better (no number in our notes)"},
    "contrastive": {"claim": "ARM beats contrastive pretraining of the same backbone", "direction": 1,
                    "number": "ARM better (no number in our notes)"},
    "cluster": {"claim": "4x4-patch clusters are best", "direction": 1,
                "number": "4x4 best; 1x1 vs 4x4 differ by 0.8 points"},
    "order_column": {"claim": "row-first and column-first orders are about equal", "direction": 0,
                     "number": "about equal"},
    "order_random": {"claim": "a random cluster order is worse than row order", "direction": 1,
                     "number": "random clearly worse (no number in our notes)"},
    "decoder_depth": {"claim": "the reference's 4 decoder blocks (feature layers held fixed)", "direction": 1,
                      "number": "4 blocks is the paper's choice (no ablation number in our notes)"},
    "feature_layers": {"claim": "multi-level feature layers feed the decoder better than the last layer alone",
                       "direction": 1, "number": "the paper's choice (no ablation number in our notes)"},
    "block": {"claim": "the MambaMLP block beats Vim's block at matched parameters (Figure 4)", "direction": 1,
              "number": "MambaMLP better (Figure 4; no number in our notes)"},
    "block_arm": {"claim": "ARM helps Vim's block too (Figure 4)", "direction": 1,
                  "number": "ARM better than scratch for both blocks (Figure 4)"},
    "efficiency": {"claim": "ARM reaches higher accuracy for the same pretraining time than MAE", "direction": 1,
                   "number": "2-10x faster than MAE or contrastive; ARM-B 300 epochs in ~34 h"},
    "probe": {"claim": "ARM's frozen features are better than the baseline's", "direction": 1,
              "number": "not reported (direction of the paper's finetuning claim)"},
}
RULE = {"alpha": ALPHA, "min_seeds": MIN_SEEDS, "level": 0.95}

Sel = Tuple[str, str, float, str]  # (kind, variant label, label fraction, metric)


def values(cells: Dict[str, Any], sel: Sel) -> List[float]:
    """The metric of every finished cell matching the selector, in seed order."""
    kind, label, frac, metric = sel
    rows = sorted((r["seed"], r[metric]) for r in cells.values() if r["kind"] == kind and r["variant"] == label
                  and (kind == "probe" or r["fraction"] == frac) and r.get(metric) is not None)
    return [v for _, v in rows]


def _ft(v: Dict[str, Any], frac: float) -> Sel:
    return ("finetune", variant_name(v), frac, "top1")


def _comparisons(plan: StudyPlan, cells: Dict[str, Any]) -> List[Tuple[str, str, Sel, Sel]]:
    """(claim key, row label, A, B) for every comparison the plan holds."""
    d, f = arm_variant(plan), plan.primary_fraction
    out: List[Tuple[str, str, Sel, Sel]] = []
    for frac in plan.label_fractions:
        pct = f"{frac:.0%} labels"
        out.append(("scratch" if frac == 1.0 else "scratch_low", f"ARM vs from scratch, {pct}", _ft(d, frac),
                    _ft({}, frac)))
        for m in (m for m in plan.methods if m != "arm"):
            out.append((m, f"ARM vs {method_label(m)}, {pct}", _ft(d, frac),
                        _ft(method_variant(m), frac)))
    for k in (k for k in plan.cluster_sizes if k != plan.default_cluster):
        out.append(("cluster", f"cluster {plan.default_cluster}x{plan.default_cluster} vs {k}x{k}", _ft(d, f),
                    _ft(arm_variant(plan, cluster=k), f)))
    for o in (o for o in plan.orderings if o != plan.default_ordering):
        out.append((f"order_{o}", f"order {plan.default_ordering} vs {o}", _ft(d, f),
                    _ft(arm_variant(plan, ordering=o), f)))
    last, top = plan.depth, plan.default_decoder_depth
    ref = arm_variant(plan, decoder_depth=top, feature_layers=[last] * top)
    for dd in (x for x in plan.decoder_depths if x != top):
        out.append(("decoder_depth", f"decoder depth {top} vs {dd} (features: layer {last})", _ft(ref, f),
                    _ft(arm_variant(plan, decoder_depth=dd, feature_layers=[last] * dd), f)))
    fl = [x for x in plan.feature_layer_sets if x != [last] * top]
    for x in fl:
        out.append(("feature_layers", f"feature layers {x} vs {[last] * top} (depth {top})", _ft(_plain(plan, x), f),
                    _ft(ref, f)))
    for b in (b for b in plan.blocks if b != "mambamlp"):
        sizes = f"{_size(cells, d)} vs {_size(cells, arm_variant(plan, block=b))}"
        out.append(("block", f"block MambaMLP vs {b} (ARM; {sizes})",
                    _ft(d, f), _ft(arm_variant(plan, block=b), f)))
        out.append(("block_arm", f"{b}: ARM vs from scratch", _ft(arm_variant(plan, block=b), f),
                    ("finetune", f"scratch-{b}", f, "top1")))
    eff = efficiency_pair(plan, cells)
    if eff:
        out.append(("efficiency", eff[0], _ft(d, f), eff[1]))
    for m in (m for m in plan.methods if m != "arm") if plan.probe else ():
        for metric in ("knn", "linear"):
            out.append(("probe", f"{'k-NN' if metric == 'knn' else 'linear probe'}: ARM vs {method_label(m)}",
                        ("probe", variant_name(d), 1.0, metric),
                        ("probe", variant_name(method_variant(m)), 1.0, metric)))
    return out


def _plain(plan: StudyPlan, layers: List[int]) -> Dict[str, Any]:
    """The variant of a feature-layer set at the default depth (the reference's set is the default variant)."""
    return _unique(plan, [arm_variant(plan, feature_layers=layers)])[0]


def _size(cells: Dict[str, Any], v: Dict[str, Any]) -> str:
    """"depth D, N parameters" of a pretraining variant, from its finished cells ("?" if none)."""
    r = next((r for r in cells.values() if r["kind"] == "pretrain" and r["variant"] == variant_name(v)
              and "params" in r), None)
    return f"depth {r['depth']}, {r['params']} parameters" if r else "?"


def cell_seconds(r: Dict[str, Any]) -> float:
    """A finished cell's time: steps x the median logged seconds per step where the log has them (a resumed cell's
    own wall-clock would miss its first part), else its wall-clock."""
    return r["steps"] * r["step_seconds"] if r.get("step_seconds") else r["seconds"]


def pretrain_seconds(cells: Dict[str, Any], label: str) -> Optional[float]:
    """Median pretraining time (cell_seconds) of a variant's finished cells (None if none)."""
    secs = [cell_seconds(r) for r in cells.values() if r["kind"] == "pretrain" and r["variant"] == label]
    return statistics.median(secs) if secs else None


def efficiency_pair(plan: StudyPlan, cells: Dict[str, Any]) -> Optional[Tuple[str, Sel]]:
    """The rule for "faster": ARM at its full length against the shortest MAE length whose median pretraining
    wall-clock is at least ARM's (the longest MAE length if none is), both finetuned alike."""
    arm = pretrain_seconds(cells, variant_name(arm_variant(plan)))
    maes = [(x, pretrain_seconds(cells, variant_name(method_variant("mae", x)))) for x in sorted(plan.mae_lengths)]
    maes = [(x, s) for x, s in maes if s is not None]
    if arm is None or not maes or "mae" not in plan.methods:
        return None
    x, s = next(((x, s) for x, s in maes if s >= arm), maes[-1])
    label = f"ARM ({arm:.0f} s pretraining) vs MAE x{x:g} steps ({s:.0f} s)"
    return label, _ft(method_variant("mae", x), plan.primary_fraction)


def derive(doc: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per comparison: claim key, label, A and B values, Welch's test (None if < 2 values a side), verdict."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    paper = doc.get("paper", PAPER)
    rows = []
    for key, label, a_sel, b_sel in _comparisons(plan, cells):
        a, b = values(cells, a_sel), values(cells, b_sel)
        w: Optional[Welch] = welch(a, b) if len(a) >= 2 and len(b) >= 2 else None
        direction = paper.get(key, {}).get("direction", 1)
        rows.append({"key": key, "label": label, "a": a, "b": b, "welch": w,
                     "verdict": verdict(w, direction, len(a), len(b)) if a and b else "not measured"})
    return rows
