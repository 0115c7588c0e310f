"""The paper's claims as data, and the comparisons that test them (computed from results.json only).

Paper numbers: Ren et al., "Autoregressive Pretraining with Mamba in Vision" (ICLR 2025, arXiv 2406.07537), abstract
and ablation section, as summarised in the project's implementation spec (ARM_SPEC.md). Where the paper
gives a direction but no number we have, the text says so. `PAPER` is written into results.json by the run, so the
report reads the paper's side from there too.
"""
from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional, Tuple

from .plan import StudyPlan, _unique, arm_variant, method_label, method_variant, pretrain_steps_of, variant_name
from .stats import (ALPHA, MARGIN, MIN_SEEDS, POWER, TTest, detectable, equivalence_p, holm, paired, verdict,
                    welch)

SOURCE = "Ren et al., Autoregressive Pretraining with Mamba in Vision, ICLR 2025 (arXiv 2406.07537)"
PAPER: Dict[str, Dict[str, Any]] = {  # claim key -> the paper's statement and number; direction: +1 A > B, 0 A = B;
    # primary: the one comparison of the claim that enters the family (declared before the run)
    "scratch": {"claim": "ARM pretraining beats supervised training from scratch", "direction": 1,
                "number": "83.2 vs 81.2 top-1 (ARM-B vs MambaMLP-B supervised, ImageNet-1K)",
                "primary": "ARM vs from scratch with all labels"},
    "scratch_low": {"claim": "ARM pretraining beats training from scratch with 10 % of the labels", "direction": 1,
                    "number": "not reported (the paper finetunes on all labels)",
                    "primary": "ARM vs from scratch at the primary label fraction"},
    "mae": {"claim": "ARM beats MAE pretraining of the same backbone", "direction": 1,
            "number": "ARM better (no number in our notes)",
            "primary": "ARM vs MAE, same pretraining steps, at the primary label fraction"},
    "contrastive": {"claim": "ARM beats contrastive pretraining of the same backbone", "direction": 1,
                    "number": "ARM better (no number in our notes)",
                    "primary": "ARM vs contrastive, same pretraining steps, at the primary label fraction"},
    "cluster": {"claim": "clusters a third of the grid's side are best (the paper: 4x4 of 12x12 patches)",
                "direction": 1, "number": "4x4 best; 1x1 vs 4x4 differ by 0.8 points",
                "primary": "the default cluster vs 1x1 (the paper's number)"},
    "order_column": {"claim": "row-first and column-first orders are about equal", "direction": 0,
                     "number": "about equal", "primary": "row vs column, equivalent within the margin"},
    "order_random": {"claim": "a random cluster order is worse than row order", "direction": 1,
                     "number": "random clearly worse (no number in our notes)", "primary": "row vs random"},
    "decoder_depth": {"claim": "the reference's 4 decoder blocks (feature layers held fixed)", "direction": 1,
                      "number": "4 blocks is the paper's choice (no ablation number in our notes)",
                      "primary": "4 decoder blocks vs the fewest"},
    "feature_layers": {"claim": "multi-level feature layers feed the decoder better than the last layer alone",
                       "direction": 1, "number": "the paper's choice (no ablation number in our notes)",
                       "primary": "the reference's layers vs the last layer alone"},
    "block": {"claim": "the MambaMLP block beats Vim's block at matched parameters (Figure 4)", "direction": 1,
              "number": "MambaMLP better (Figure 4; no number in our notes)",
              "primary": "ARM MambaMLP vs ARM Vim, parameters matched by depth"},
    "block_arm": {"claim": "ARM helps Vim's block too (Figure 4)", "direction": 1,
                  "number": "ARM better than scratch for both blocks (Figure 4)",
                  "primary": "Vim: ARM vs from scratch"},
    "efficiency": {"claim": "ARM reaches higher accuracy than MAE for the same pretraining compute", "direction": 1,
                   "number": "2-10x faster than MAE or contrastive; ARM-B 300 epochs in ~34 h",
                   "primary": "ARM vs MAE given at least ARM's measured compute"},
    "probe": {"claim": "ARM's frozen features are better than the baseline's", "direction": 1,
              "number": "not reported (direction of the paper's finetuning claim)",
              "primary": "linear probe: ARM vs MAE (the first baseline)"},
}
RULE = {"alpha": ALPHA, "min_seeds": MIN_SEEDS, "level": 0.95, "margin": MARGIN, "power": POWER,
        "correction": "Holm"}

Sel = Tuple[str, str, float, str]  # (kind, variant label, label fraction, metric)
Comparison = Tuple[str, str, Sel, Sel, bool]  # (claim key, row label, A, B, primary)


def by_seed(cells: Dict[str, Any], sel: Sel) -> Dict[int, float]:
    """seed -> the metric of the finished cell matching the selector."""
    kind, label, frac, metric = sel
    return {r["seed"]: r[metric] for r in cells.values() if r["kind"] == kind and r["variant"] == label
            and (kind == "probe" or r["fraction"] == frac) and r.get(metric) is not None}


def values(cells: Dict[str, Any], sel: Sel) -> List[float]:
    """The metric of every finished cell matching the selector, in seed order."""
    return [v for _, v in sorted(by_seed(cells, sel).items())]


def _ft(v: Dict[str, Any], frac: float) -> Sel:
    return ("finetune", variant_name(v), frac, "top1")


def _main_rows(plan: StudyPlan) -> List[Comparison]:
    d, pf = arm_variant(plan), plan.primary_fraction
    out: List[Comparison] = []
    for frac in plan.label_fractions:
        pct = f"{frac:.0%} labels"
        key = "scratch" if frac == 1.0 else "scratch_low"
        out.append((key, f"ARM vs from scratch, {pct}", _ft(d, frac), _ft({}, frac), frac in (1.0, pf)))
        for m in (m for m in plan.methods if m != "arm"):
            out.append((m, f"ARM vs {method_label(m)}, {pct}", _ft(d, frac), _ft(method_variant(m), frac),
                        frac == pf))
    return out


def _ablation_rows(plan: StudyPlan, cells: Dict[str, Any]) -> List[Comparison]:
    d, f = arm_variant(plan), plan.primary_fraction
    k0 = plan.default_cluster
    others = [k for k in plan.cluster_sizes if k != k0]
    out: List[Comparison] = [("cluster", f"cluster {k0}x{k0} vs {k}x{k}", _ft(d, f),
                              _ft(arm_variant(plan, cluster=k), f), k == min(others)) for k in others]
    out += [(f"order_{o}", f"order {plan.default_ordering} vs {o}", _ft(d, f), _ft(arm_variant(plan, ordering=o), f),
             True) for o in plan.orderings if o != plan.default_ordering]
    last, top = plan.depth, plan.default_decoder_depth
    ref = arm_variant(plan, decoder_depth=top, feature_layers=[last] * top)
    depths = [x for x in plan.decoder_depths if x != top]
    out += [("decoder_depth", f"decoder depth {top} vs {x} (features: layer {last})", _ft(ref, f),
             _ft(arm_variant(plan, decoder_depth=x, feature_layers=[last] * x), f), x == min(depths)) for x in depths]
    sets = [x for x in plan.feature_layer_sets if x != [last] * top]
    out += [("feature_layers", f"feature layers {x} vs {[last] * top} (depth {top})", _ft(_plain(plan, x), f),
             _ft(ref, f), i == 0) for i, x in enumerate(sets)]
    for b in (b for b in plan.blocks if b != "mambamlp"):
        sizes = f"{_size(cells, d)} vs {_size(cells, arm_variant(plan, block=b))}"
        out.append(("block", f"block MambaMLP vs {b} (ARM; {sizes})", _ft(d, f), _ft(arm_variant(plan, block=b), f),
                    True))
        out.append(("block_arm", f"{b}: ARM vs from scratch", _ft(arm_variant(plan, block=b), f),
                    ("finetune", f"scratch-{b}", f, "top1"), True))
    return out


def _comparisons(plan: StudyPlan, cells: Dict[str, Any]) -> List[Comparison]:
    """(claim key, row label, A, B, primary) for every comparison the plan holds; one primary row per claim."""
    out = _main_rows(plan) + _ablation_rows(plan, cells)
    eff = efficiency_pair(plan, cells)
    if eff:
        out.append(("efficiency", eff[0], _ft(arm_variant(plan), plan.primary_fraction), eff[1], True))
    baselines = [m for m in plan.methods if m != "arm"] if plan.probe else []
    for m in baselines:
        for metric in ("linear", "knn"):
            out.append(("probe", f"{'k-NN' if metric == 'knn' else 'linear probe'}: ARM vs {method_label(m)}",
                        ("probe", variant_name(arm_variant(plan)), 1.0, metric),
                        ("probe", variant_name(method_variant(m)), 1.0, metric),
                        m == baselines[0] and metric == "linear"))
    return out


def _plain(plan: StudyPlan, layers: List[int]) -> Dict[str, Any]:
    """The variant of a feature-layer set at the default depth (the reference's set is the default variant)."""
    return _unique(plan, [arm_variant(plan, feature_layers=layers)])[0]


def _size(cells: Dict[str, Any], v: Dict[str, Any]) -> str:
    """"depth D, N parameters" of a pretraining variant, from its finished cells ("?" if none)."""
    r = next((r for r in cells.values() if r["kind"] == "pretrain" and r["variant"] == variant_name(v)
              and "params" in r), None)
    return f"depth {r['depth']}, {r['params']} parameters" if r else "?"


def compute_seconds(plan: StudyPlan, r: Dict[str, Any]) -> float:
    """A finished cell's measured compute: process CPU time on a CPU (a resumed cell's scaled to all its steps),
    wall-clock on a GPU."""
    return r["seconds"] if plan.device == "cuda" else r["cpu_seconds"]


def pretrain_seconds(plan: StudyPlan, cells: Dict[str, Any], label: str) -> Optional[float]:
    """Median pretraining compute (compute_seconds) of a variant's finished cells (None if none)."""
    secs = [compute_seconds(plan, r) for r in cells.values() if r["kind"] == "pretrain" and r["variant"] == label]
    return statistics.median(secs) if secs else None


def efficiency_pair(plan: StudyPlan, cells: Dict[str, Any]) -> Optional[Tuple[str, Sel]]:
    """The rule for "more accurate for the same compute": ARM at its full length against the shortest MAE length
    whose median measured pretraining compute is at least ARM's (the longest MAE length if none is, said in the
    label), both finetuned alike."""
    arm = pretrain_seconds(plan, cells, variant_name(arm_variant(plan)))
    maes = [(x, pretrain_seconds(plan, cells, variant_name(method_variant("mae", x))))
            for x in sorted(plan.mae_lengths)]
    maes = [(x, s) for x, s in maes if s is not None]
    if arm is None or not maes or "mae" not in plan.methods:
        return None
    x, s = next(((x, s) for x, s in maes if s >= arm), maes[-1])
    less = "" if s >= arm else ", less than ARM's"
    unit = "GPU s" if plan.device == "cuda" else "CPU s"
    label = f"ARM ({arm:.0f} {unit} pretraining) vs MAE x{x:g} steps ({s:.0f} {unit}{less})"
    return label, _ft(method_variant("mae", x), plan.primary_fraction)


def _test(a: Dict[int, float], b: Dict[int, float], level: float) -> Optional[TTest]:
    """Paired over the seeds both sides have when they have the same seeds, else Welch (None: < 2 values a side)."""
    if len(a) < 2 or len(b) < 2:
        return None
    if set(a) == set(b):
        return paired([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], level)
    return welch(list(a.values()), list(b.values()), level)


def derive(doc: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per comparison: claim key, label, primary, A and B values (seed order), the test (paired or Welch;
    None with < 2 values a side), the row's p (two-sided; for an "about equal" claim equivalence_p's), Holm's
    adjusted p over the primary rows that can be decided, the smallest detectable difference, and the verdict."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    paper, rule = doc.get("paper", PAPER), {**RULE, **doc.get("rule", {})}
    rows = []
    for key, label, a_sel, b_sel, primary in _comparisons(plan, cells):
        a, b = by_seed(cells, a_sel), by_seed(cells, b_sel)
        test = _test(a, b, rule["level"])
        row: Dict[str, Any] = {"key": key, "label": label, "primary": primary, "a": values(cells, a_sel),
                               "b": values(cells, b_sel), "test": test, "n": min(len(a), len(b)), "p": None,
                               "p_adj": None, "equivalent": False, "direction": paper.get(key, {}).get("direction", 1),
                               "margin": rule["margin"]}
        if test is not None:
            row["p"], row["equivalent"] = (equivalence_p(test, rule["margin"]) if row["direction"] == 0
                                           else (test.p, False))
        rows.append(row)
    family = [r for r in rows if r["primary"] and r["p"] is not None and r["n"] >= rule["min_seeds"]]
    for r, p_adj in zip(family, holm([r["p"] for r in family])):
        r["p_adj"] = p_adj
    for r in rows:
        r["detectable"] = detectable(r["test"], rule["alpha"] / max(1, len(family)), rule["power"]) \
            if r["test"] else None
        r["verdict"] = (verdict(r["p_adj"], r["test"].diff if r["test"] else 0.0, r["direction"], r["n"],
                                r["equivalent"]) if r["primary"] else "secondary (no verdict)") \
            if r["a"] and r["b"] else "not measured"
    return rows


def efficiency_rows(doc: Dict[str, Any]) -> List[Dict[str, Any]]:
    """ARM and MAE at each pretraining length: steps, median pretraining compute (s), finetuned top-1 values."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    out = []
    for method, lengths in (("ARM", plan.arm_lengths), ("MAE", plan.mae_lengths if "mae" in plan.methods else [])):
        for x in sorted(lengths):
            v = arm_variant(plan, length=x) if method == "ARM" else method_variant("mae", x)
            name = variant_name(v)
            out.append({"method": method, "steps": pretrain_steps_of(plan, v),
                        "seconds": pretrain_seconds(plan, cells, name),
                        "top1": values(cells, ("finetune", name, plan.primary_fraction, "top1"))})
    return out
