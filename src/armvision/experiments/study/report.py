"""REPORT.md of the study, rendered from results.json only (the run writes the plan, the cells, the skipped cells,
the machine, the paper's claims, the verdict rule and the budget curves into it).

Numbers reach the Markdown only from the document itself or from the computing functions here and in claims.py
(`derive`, `efficiency_rows`, `probe_rows`, `summary`); tests/study checks that every number token traces back.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

from armvision.fileio import atomic_write

from .claims import PAPER, RULE, cell_seconds, derive, pretrain_seconds, values
from .plan import StudyPlan, arm_variant, method_variant, pretrain_steps_of, variant_name
from .stats import mean_std

Doc = Dict[str, Any]


def summary(doc: Doc) -> Dict[str, float]:
    """Counts and wall-clock totals of the document."""
    cells = doc["cells"]
    return {"cells": len(cells), "skipped": len(doc.get("skipped", {})),
            "cell_minutes": sum(cell_seconds(r) for r in cells.values()) / 60,
            "wall_minutes": doc.get("meta", {}).get("wall_seconds", 0.0) / 60}


def efficiency_rows(doc: Doc) -> List[Dict[str, Any]]:
    """ARM and MAE at each pretraining length: steps, median pretraining seconds, finetuned top-1 values."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    out = []
    for method, lengths in (("ARM", plan.arm_lengths), ("MAE", plan.mae_lengths if "mae" in plan.methods else [])):
        for x in sorted(lengths):
            v = arm_variant(plan, length=x) if method == "ARM" else method_variant("mae", x)
            name = variant_name(v)
            out.append({"method": method, "steps": pretrain_steps_of(plan, v), "seconds": pretrain_seconds(cells, name),
                         "top1": values(cells, ("finetune", name, plan.primary_fraction, "top1"))})
    return out


def probe_rows(doc: Doc) -> List[Dict[str, Any]]:
    """k-NN and linear-probe top-1 of each pretrained encoder of the main comparison."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    main = [arm_variant(plan)] + [method_variant(m) for m in plan.methods if m != "arm"]
    return [{"variant": variant_name(v), "knn": values(cells, ("probe", variant_name(v), 1.0, "knn")),
             "linear": values(cells, ("probe", variant_name(v), 1.0, "linear"))} for v in main]


def _header(doc: Doc) -> List[str]:
    plan, meta, s = doc["plan"], doc.get("meta", {}), summary(doc)
    data = meta.get("data", {})
    return ["# ARM's claims at small scale: verdicts", "",
            f"Command: `{meta.get('command', 'armvision study')}`. Machine: {meta.get('machine', '?')}, "
            f"{meta.get('cpu_count', '?')} CPUs, {meta.get('jobs', 1)} worker process(es). Python "
            f"{meta.get('python', '?')}, torch {meta.get('torch', '?')}, armvision {meta.get('armvision', '?')}. "
            f"{s['cells']:.0f} finished cells, {s['cell_minutes']:.1f} CPU-minutes of cell time in all (each cell on "
            f"one thread; a resumed pretraining cell counted as steps x its median step time). Last invocation "
            f"(finished cells are kept, so a run may span several): {meta.get('started', '?')} to "
            f"{meta.get('finished', '?')}, {s['wall_minutes']:.1f} minutes wall-clock.", "",
            f"Data: {data.get('name', plan['data'] or 'embedded digits')} ({data.get('train', '?')} train / "
            f"{data.get('val', '?')} val images). {data.get('note', '')}", "",
            f"Model: width {plan['embed_dim']}, depth {plan['depth']}, {plan['img_size']} px, patch "
            f"{plan['patch_size']} (the same backbone for every method). Pretraining {plan['pretrain_steps']} steps, "
            f"finetuning {plan['finetune_steps']} steps "
            f"({plan.get('low_label_finetune_steps') or plan['finetune_steps']} with a fraction of the labels), "
            f"batch {plan['batch_size']}, seeds {plan['seeds']}. Numbers "
            "are validation top-1 (%), mean ± std over seeds (n in brackets).", ""]


def _rule(doc: Doc) -> List[str]:
    r = doc.get("rule", RULE)
    lines = ["## Verdict rule (fixed before the run)", "",
             f"Welch's t-test of A − B over seeds (Welch–Satterthwaite degrees of freedom, two-sided p, "
             f"{r['level']:.0%} confidence interval of the difference). **supported**: p < {r['alpha']:g} in the "
             f"paper's direction; **contradicted**: p < {r['alpha']:g} against it (for an \"about equal\" claim: a "
             f"difference either way); otherwise **inconclusive at this scale**. Verdicts are drawn only from "
             f"comparisons with at least {r['min_seeds']} seeds on each side.", ""]
    if len(doc["plan"]["seeds"]) < r["min_seeds"]:
        n = len(doc["plan"]["seeds"])
        lines += [f"This run has {n} seed(s): the numbers are shown, no verdicts are drawn.", ""]
    return lines


def _fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def _claims_table(doc: Doc) -> List[str]:
    paper = doc.get("paper", PAPER)
    lines = ["## Claims", "", "| claim (paper) | paper's number | comparison A vs B | A | B | A − B [95 % CI] | "
             "t (df) | p | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for row in derive(doc):
        p, w = paper.get(row["key"], {}), row["welch"]
        a, b = (f"{mean_std(x)} ({len(x)})" if x else "n/a" for x in (row["a"], row["b"]))
        stats = (f"{w.diff:+.2f} [{w.ci_low:+.2f}, {w.ci_high:+.2f}] | {w.t:.2f} ({w.df:.1f}) | {_fmt_p(w.p)}"
                 if w else "n/a | n/a | n/a")
        lines.append(f"| {p.get('claim', row['key'])} | {p.get('number', '')} | {row['label']} | {a} | {b} | {stats} | "
                     f"{row['verdict']} |")
    return lines + [""]


def _efficiency_table(doc: Doc) -> List[str]:
    rows = efficiency_rows(doc)
    if not rows:  # a --main-only plan has no efficiency lengths
        return []
    lines = ["## Efficiency: finetuned top-1 against pretraining wall-clock", "",
             "| method | pretraining steps | pretraining s (median) | top-1 |", "|---|---|---|---|"]
    for r in rows:
        secs = f"{r['seconds']:.0f}" if r["seconds"] is not None else "n/a"
        lines.append(f"| {r['method']} | {r['steps']} | {secs} | {mean_std(r['top1'])} ({len(r['top1'])}) |")
    return lines + ["", "![efficiency](efficiency.png)", ""]


def _probe_table(doc: Doc) -> List[str]:
    if not doc["plan"].get("probe"):
        return []
    lines = ["## Frozen encoders: k-NN and linear probe", "", "| pretraining | k-NN top-1 | linear-probe top-1 |",
             "|---|---|---|"]
    for r in probe_rows(doc):
        lines.append(f"| {r['variant']} | {mean_std(r['knn'])} ({len(r['knn'])}) | "
                     f"{mean_std(r['linear'])} ({len(r['linear'])}) |")
    return lines + [""]


def _budget(doc: Doc) -> List[str]:
    ch = doc.get("curves")
    if not ch:
        return ["## Budgets", "", "No `--curves` measurement was found beside this run; the plan's budgets are its "
                "defaults; run `armvision study --curves` with the same --output to measure them.", ""]
    lines = ["## Budgets (from `armvision study --curves`)", "", "| curve | steps: metric | chosen | converged |",
             "|---|---|---|---|"] + curve_rows(ch)
    plan = doc["plan"]
    yes = lambda k: "yes" if ch.get(k) else "no"  # noqa: E731
    lines += ["", f"This run used {plan['pretrain_steps']} pretraining and {plan['finetune_steps']} / "
              f"{plan.get('low_label_finetune_steps') or plan['finetune_steps']} finetuning steps (all labels / a "
              f"fraction); the rule chose {ch.get('pretrain_steps')} and {ch.get('finetune_steps')} / "
              f"{ch.get('low_label_finetune_steps')} (converged: {yes('pretrain_converged')}, "
              f"{yes('finetune_converged')} / {yes('low_label_finetune_converged')})."]
    return lines + ["", "![curves](curves/curves.png)", ""]


def curve_rows(choice: Dict[str, Any], with_metric: bool = False) -> List[str]:
    """Markdown rows of a budget table, one per measured curve: name, the points (steps: metric), the chosen
    length and whether it converged (CURVES.md names the metric too)."""
    rows = []
    for kind, metric in (("finetune", "top-1"), ("pretrain", "loss")):
        for label, c in choice.get(kind, {}).items():
            pts = ", ".join(f"{n}: {v:.{2 if kind == 'finetune' else 4}f}" for n, v in c["points"])
            name = f"{kind} {label} ({metric})" if with_metric else f"{kind} {label}"
            rows.append(f"| {name} | {pts} | {c['steps']} | {'yes' if c['converged'] else 'no'} |")
    return rows


def _skipped(doc: Doc) -> List[str]:
    skipped = doc.get("skipped", {})
    if not skipped:
        return []
    reasons: Dict[str, int] = {}
    for why in skipped.values():
        reasons[why] = reasons.get(why, 0) + 1
    return ["## Not run", ""] + [f"- {n} cell(s): {why}" for why, n in reasons.items()] + [""]


def render(doc: Doc) -> str:
    """The whole REPORT.md text from a results document."""
    meta = doc.get("meta", {})
    lines = (_header(doc) + _rule(doc) + _claims_table(doc) + _efficiency_table(doc) + _probe_table(doc)
             + _budget(doc) + _skipped(doc))
    lines += ["## Plots", "", "![main](main.png)", "", "## Reproduce", "", "```",
              meta.get("command", "armvision study"), "```", "",
              "Finished cells are kept under `cells/` (each with `result.json`, `log.jsonl`, checkpoints); "
              "rerunning the command skips them and resumes an interrupted one. A claim that holds at this scale is "
              "weak support for the paper's ImageNet result; one that does not hold here does not refute it.", ""]
    return "\n".join(lines)


def write_report(doc: Doc, root: Path) -> Path:
    """Write root/REPORT.md and the plots from a results document; returns the report's path."""
    root = Path(root)
    path = root / "REPORT.md"
    atomic_write(path, render(doc))
    try:
        from .plots import draw_plots

        draw_plots(doc, root)
    except Exception as e:  # a plot is a convenience: never lose the report over it
        print(f"warning: could not draw the plots: {e}", file=sys.stderr)
    return path
