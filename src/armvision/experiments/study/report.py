"""REPORT.md of the study, rendered from results.json only (the run writes the plan, the cells, the skipped cells,
the machine, the paper's claims, the verdict rule and the budget curves into it).

Numbers reach the Markdown only from the document itself or from the computing functions here and in claims.py
(`derive`, `efficiency_rows`, `probe_rows`, `summary`); tests/study checks that every number token traces back.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from armvision.fileio import atomic_write

from .claims import PAPER, RULE, compute_seconds, derive, efficiency_rows, pretrain_seconds, values
from .plan import StudyPlan, arm_variant, method_variant, pretrain_steps_of, pretrain_variants, variant_name
from .stats import mean_std

Doc = Dict[str, Any]


def summary(doc: Doc) -> Dict[str, float]:
    """Counts and compute totals of the document (CPU-minutes on a CPU, GPU-minutes on a GPU)."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    return {"cells": len(cells), "skipped": len(doc.get("skipped", {})),
            "cell_minutes": math.fsum(compute_seconds(plan, r) for r in cells.values()) / 60,  # order-free
            "wall_minutes": doc.get("meta", {}).get("wall_seconds", 0.0) / 60}


def geometry(doc: Doc) -> Dict[str, int]:
    """The patch grid's side and ARM's number of clusters at the plan's default cluster size."""
    plan = doc["plan"]
    grid = plan["img_size"] // plan["patch_size"]
    return {"grid": grid, "clusters": (grid // plan["default_cluster"]) ** 2}


def compute_rows(doc: Doc) -> List[Dict[str, Any]]:
    """Every pretraining variant that ran: steps, median compute per cell (s) and per step (ms), cells timed."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    out = []
    for v in pretrain_variants(plan):
        name = variant_name(v)
        rs = [r for r in cells.values() if r["kind"] == "pretrain" and r["variant"] == name]
        if rs:
            sec = pretrain_seconds(plan, cells, name)
            steps = pretrain_steps_of(plan, v)
            out.append({"variant": name, "steps": steps, "seconds": sec, "ms_per_step": 1000 * sec / steps,
                        "n": len(rs), "resumed": sum(1 for r in rs if r.get("resumed"))})
    return out


def probe_rows(doc: Doc) -> List[Dict[str, Any]]:
    """k-NN and linear-probe top-1 of each pretrained encoder of the main comparison."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    main = [arm_variant(plan)] + [method_variant(m) for m in plan.methods if m != "arm"]
    return [{"variant": variant_name(v), "knn": values(cells, ("probe", variant_name(v), 1.0, "knn")),
             "linear": values(cells, ("probe", variant_name(v), 1.0, "linear"))} for v in main]


def _header(doc: Doc) -> List[str]:
    plan, meta, s, g = doc["plan"], doc.get("meta", {}), summary(doc), geometry(doc)
    data = meta.get("data", {})
    gpu = plan.get("device") == "cuda"
    unit = "GPU-minutes (wall-clock of each cell on the GPU)" if gpu else \
        "CPU-minutes (process CPU time of each cell, one thread; a resumed cell's scaled to all its steps)"
    fractions = ", ".join(f"{k.split(': ')[1]}: {v}" for k, v in data.items() if k.startswith("labelled: "))
    return ["# ARM's claims at small scale: verdicts", "",
            f"Command: `{meta.get('command', 'armvision study')}`. Machine: {meta.get('machine', '?')} "
            f"({meta.get('cpu_model', '?')}{', ' + meta['gpu'] if meta.get('gpu') else ''}), "
            f"{meta.get('cpu_count', '?')} CPUs, {meta.get('jobs', 1)} worker process(es). Python "
            f"{meta.get('python', '?')}, torch {meta.get('torch', '?')}, armvision {meta.get('armvision', '?')}. "
            f"{s['cells']:.0f} finished cells, {s['cell_minutes']:.1f} {unit}. Last invocation (finished cells are "
            f"kept, so a run may span several): {meta.get('started', '?')} to {meta.get('finished', '?')}, "
            f"{s['wall_minutes']:.1f} minutes wall-clock.", "",
            f"Data: {data.get('name', plan['data'])}: {data.get('note', '')}. Splits (splits.py): "
            f"{data.get('fit', '?')} fit images (pretraining, probes, finetuning), {data.get('selection', '?')} "
            f"selection images (a stratified {plan['selection_fraction']:.0%} of train/, drawn once: they chose the "
            f"budgets and judge nothing here), {data.get('test', '?')} held-out test images (val/: every number "
            f"below). Labelled images per seed, by label fraction: {fractions or '?'} (a stratified subset of fit "
            "drawn with each seed; the methods of one seed share it).", "",
            f"Model: width {plan['embed_dim']}, depth {plan['depth']}, {plan['img_size']} px, patch "
            f"{plan['patch_size']} ({g['grid']}x{g['grid']} patches; ARM's clusters of {plan['default_cluster']}x"
            f"{plan['default_cluster']} patches make {g['clusters']} clusters), the same backbone "
            f"for every method. Pretraining {plan['pretrain_steps']} steps, finetuning {plan['finetune_steps']} steps "
            f"({plan.get('low_label_finetune_steps') or plan['finetune_steps']} with a fraction of the labels), "
            f"batch {plan['batch_size']}, device {plan.get('device', 'cpu')}, seeds {plan['seeds']}; the baselines, "
            f"ablations and efficiency cells are finetuned with {plan['primary_fraction']:.0%} of the labels (the "
            "primary fraction). Numbers are test top-1 (%), mean ± std over seeds (n in brackets).", ""]


def _rule(doc: Doc) -> List[str]:
    r = {**RULE, **doc.get("rule", {})}
    lines = ["## Verdict rule (fixed before the run)", "",
             "Each claim has one primary comparison, declared before the run (`primary` in results.json's `paper`); "
             "the other comparisons of a claim are secondary: shown, never judged. Cells of one seed share the "
             "labelled subset, the initialisation seed and the data order, so A − B is tested **paired** over seeds "
             "(t with n − 1 degrees of freedom; Welch's test where the two sides' seeds differ, marked). A "
             "directional claim's p is two-sided. An \"about equal\" claim is tested for equivalence within "
             f"±{r['margin']:g} top-1 points by two one-sided tests (TOST) against the one-sided test that the "
             "difference lies beyond the margin; its p is twice the smaller of the two. "
             f"**{r['correction']}'s step-down correction** runs over the primary rows that can be decided (at least "
             f"{r['min_seeds']} seeds a side), holding the family-wise error at {r['alpha']:g}; verdicts come from the "
             f"**adjusted** p only. **supported**: adjusted p < {r['alpha']:g} in the paper's direction (about equal: "
             f"shown within the margin); **contradicted**: adjusted p < {r['alpha']:g} against it (about equal: shown "
             "beyond the margin); otherwise **inconclusive at this scale**. The confidence interval is "
             f"{r['level']:.0%}, uncorrected. *Detectable* is the power analysis: the smallest true difference the "
             f"test finds with {r['power']:.0%} power at Holm's strictest level (alpha / number of primary rows), "
             "from the observed spread.", ""]
    if len(doc["plan"]["seeds"]) < r["min_seeds"]:
        n = len(doc["plan"]["seeds"])
        lines += [f"This run has {n} seed(s): the numbers are shown, no verdicts are drawn.", ""]
    return lines


def _fmt_p(p: Optional[float]) -> str:
    if p is None:
        return "n/a"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def _ab(row: Dict[str, Any]) -> str:
    a, b = (f"{mean_std(x)} ({len(x)})" if x else "n/a" for x in (row["a"], row["b"]))
    t = row["test"]
    ci = f"{t.diff:+.2f} [{t.ci_low:+.2f}, {t.ci_high:+.2f}]" if t else "n/a"
    kind = "n/a" if not t else (f"TOST ±{row['margin']:g} ({t.kind})" if row["direction"] == 0 else t.kind)
    return f"{a} | {b} | {ci} | {kind}"


def _claims_table(doc: Doc) -> List[str]:
    paper = doc.get("paper", PAPER)
    rows = derive(doc)
    lines = ["## Claims (primary comparisons; Holm-adjusted verdicts)", "",
             "| claim (paper) | paper's number | comparison A vs B | A | B | A − B [95 % CI] | test | p | p (Holm) | "
             "detectable | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in (r for r in rows if r["primary"]):
        p = paper.get(row["key"], {})
        det = "n/a" if row["detectable"] is None or row["direction"] == 0 else f"{row['detectable']:.2f}"
        lines.append(f"| {p.get('claim', row['key'])} | {p.get('number', '')} | {row['label']} | {_ab(row)} | "
                     f"{_fmt_p(row['p'])} | {_fmt_p(row['p_adj'])} | {det} | {row['verdict']} |")
    secondary = [r for r in rows if not r["primary"]]
    if secondary:
        lines += ["", "## Secondary comparisons (shown, not judged)", "",
                  "| claim | comparison A vs B | A | B | A − B [95 % CI] | test |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['key']} | {r['label']} | {_ab(r)} |" for r in secondary]
    return lines + [""]


def _compute_table(doc: Doc) -> List[str]:
    rows = compute_rows(doc)
    if not rows:
        return []
    unit = "GPU s" if doc["plan"].get("device") == "cuda" else "CPU s"
    lines = ["## Compute: every pretraining timed", "",
             f"Median {unit} of a cell over its seeds (process CPU time counts only while the process runs, so a "
             "loaded or paused machine does not inflate it).", "",
             f"| pretraining | steps | {unit} (median) | ms per step | cells (resumed) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['steps']} | {r['seconds']:.0f} | {r['ms_per_step']:.0f} | {r['n']} "
                     f"({r['resumed']}) |")
    return lines + [""]


def _efficiency_table(doc: Doc) -> List[str]:
    rows = efficiency_rows(doc)
    if not rows:  # a --main-only plan has no efficiency lengths
        return []
    unit = "GPU s" if doc["plan"].get("device") == "cuda" else "CPU s"
    lines = ["## Efficiency: finetuned top-1 against measured pretraining compute", "",
             "The efficiency claim compares ARM with the shortest MAE length whose median compute is at least ARM's "
             "(equal compute, or more for MAE).", "",
             f"| method | pretraining steps | pretraining {unit} (median) | top-1 |", "|---|---|---|---|"]
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
    low = plan.get("low_label_finetune_steps") or plan["finetune_steps"]
    used = [("pretraining", plan["pretrain_steps"], "pretrain"), ("finetuning with all labels", plan["finetune_steps"],
                                                                  "finetune"),
            ("finetuning with a fraction of the labels", low, "low_label_finetune")]
    said = [f"{what}: {n} steps, the rule chose {ch[key + '_steps']} "
            f"({'converged' if ch.get(key + '_converged') else 'not converged: the longest measured'})"
            for what, n, key in used if ch.get(key + "_steps") is not None]
    lines += ["", f"This run, against the curves (measured on the selection split): {'; '.join(said)}."]
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
    lines = (_header(doc) + _rule(doc) + _claims_table(doc) + _compute_table(doc) + _efficiency_table(doc)
             + _probe_table(doc) + _budget(doc) + _skipped(doc))
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
