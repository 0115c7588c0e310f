"""The study's pictures (matplotlib's Agg canvas, no display): main.png, efficiency.png, curves/curves.png."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .claims import efficiency_rows, values
from .plan import StudyPlan, arm_variant, method_label, method_variant, variant_name

Doc = Dict[str, Any]


def _figure(ncols: int = 1, size: Tuple[float, float] = (6, 3.5)) -> Tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _ms(xs: List[float]) -> Tuple[float, float]:
    return (statistics.mean(xs) if xs else 0.0, statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main_plot(doc: Doc, path: Path) -> Path:
    """Finetuned top-1 per label fraction: from scratch, ARM and each baseline, every seed as a dot beside the
    mean ± std (points, not bars, so the axis can zoom to where the methods differ without exaggerating)."""
    plan, cells = StudyPlan(**doc["plan"]), doc["cells"]
    series = [("scratch", "from scratch"), (variant_name(arm_variant(plan)), "ARM")]
    series += [(variant_name(method_variant(m)), method_label(m)) for m in plan.methods if m != "arm"]
    fig, ax = _figure()
    width = 0.8 / len(series)
    for j, (label, name) in enumerate(series):
        for i, f in enumerate(plan.label_fractions):
            xs = values(cells, ("finetune", label, f, "top1"))
            x = i + (j - (len(series) - 1) / 2) * width
            m, s = _ms(xs)
            ax.errorbar([x], [m], yerr=[s], fmt="o", capsize=4, color=f"C{j}", label=name if i == 0 else None)
            ax.plot([x + 0.25 * width] * len(xs), xs, ".", color=f"C{j}", alpha=0.5, markersize=4)
    ax.set_xticks(range(len(plan.label_fractions)), [f"{f:.0%} labels" for f in plan.label_fractions])
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Finetuned accuracy: mean ± std (large), each seed (small)")
    ax.legend(loc="best", fontsize=8)  # the seeds' dots must not hide behind it
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def efficiency_plot(doc: Doc, path: Path) -> Path:
    """Finetuned top-1 against median measured pretraining compute, one line per method (ARM, MAE)."""

    measured = [r for r in efficiency_rows(doc) if r["seconds"] is not None and r["top1"]]
    fig, ax = _figure()
    for method in ("ARM", "MAE"):
        rows = [r for r in measured if r["method"] == method]
        if rows:
            ms = [_ms(r["top1"]) for r in rows]
            ax.errorbar([r["seconds"] for r in rows], [m for m, _ in ms], yerr=[s for _, s in ms], marker="o",
                        capsize=3, label=method)
    ax.set_xlabel(f"pretraining compute ({'GPU' if doc['plan'].get('device') == 'cuda' else 'CPU'} s, median over "
                  "seeds)")
    ax.set_ylabel("test top-1 after finetuning (%)")
    ax.set_title("Accuracy per unit of pretraining compute")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def curves_plot(doc: Doc, path: Path) -> Path:
    """Budget curves: finetune-from-scratch top-1 and final pretraining loss against steps; the longest
    pretraining run's logged loss."""
    ch = doc["choice"]
    fig, (a0, a1, a2) = _figure(3, (13, 3.5))
    for label, c in ch.get("finetune", {}).items():
        a0.plot(*zip(*c["points"]), marker="o", label=f"{float(label[1:]):.0%} labels (chose {c['steps']})")
    for label, c in ch.get("pretrain", {}).items():
        a1.plot(*zip(*c["points"]), marker="o", label=f"{label} (chose {c['steps']})")
    longest: Dict[str, Tuple[int, List[Any]]] = {}
    for r in doc["cells"].values():
        if r.get("curve") and r["steps"] >= longest.get(r["variant"], (0, []))[0]:
            longest[r["variant"]] = (r["steps"], r["curve"])
    for label, (n, curve) in longest.items():
        a2.plot(*zip(*curve), label=f"{label}, {n} steps")
    for ax, title, ylab in ((a0, "finetune from scratch", "val top-1 (%)"), (a1, "pretraining: final loss", "loss"),
                            (a2, "pretraining loss (longest run)", "loss")):
        ax.set_title(title)
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel(ylab)
        if ax is not a2:
            ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def draw_plots(doc: Doc, root: Path) -> List[Path]:
    """main.png and (if the plan has efficiency lengths) efficiency.png under root; returns the written paths."""

    root = Path(root)
    paths = [main_plot(doc, root / "main.png")]
    return paths + ([efficiency_plot(doc, root / "efficiency.png")] if efficiency_rows(doc) else [])
