"""Per-class results of an evaluation: accuracy of each class by name, the confusion matrix as JSON and as a PNG,
and the short table `armvision eval` prints."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

from ..fileio import atomic_write, atomic_write_via
from .metrics import ConfusionMatrix

MAX_TICK_LABELS = 40  # a confusion plot names its classes on the axes up to this many


def per_class_rows(confusion: ConfusionMatrix, names: Sequence[str]) -> list[dict[str, Any]]:
    """[{"index", "name", "images", "correct", "accuracy" (percent, None when the class has no image)}, ...]"""
    rows = []
    for i, (name, c) in enumerate(zip(names, confusion.per_class())):
        acc = c["accuracy"]
        rows.append({"index": i, "name": name, "images": c["images"], "correct": c["correct"],
                     "accuracy": None if math.isnan(acc) else acc})
    return rows


def format_per_class(rows: Sequence[dict[str, Any]], limit: int = 20) -> str:
    """All classes (up to `limit`), else the `limit // 2` least accurate ones; classes without images are left out."""
    seen = [r for r in rows if r["images"]]
    shown, head = seen, "per-class top-1"
    if len(seen) > limit:
        shown = sorted(seen, key=lambda r: r["accuracy"])[: limit // 2]
        head = f"per-class top-1, the {len(shown)} least accurate of {len(seen)} classes"
    width = max([len("class")] + [len(r["name"]) for r in shown])
    lines = [f"{head}:", f"  {'class'.ljust(width)}  images  top-1 %"]
    lines += [f"  {r['name'].ljust(width)}  {r['images']:>6}  {r['accuracy']:7.2f}" for r in shown]
    return "\n".join(lines)


def plot_confusion(matrix: Sequence[Sequence[int]], names: Sequence[str], path: Path, title: str) -> Path:
    """The confusion matrix as a PNG: rows true class, columns predicted class, each row as percent of its images."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=np.float64)
    rows = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0) * 100.0  # percent of each true class
    k = len(names)
    side = min(14.0, 3.0 + 0.45 * k) if k <= MAX_TICK_LABELS else 10.0
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=100.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="images of the true class (%)")
    if k <= MAX_TICK_LABELS:
        ax.set_xticks(range(k), labels=list(names), rotation=90)
        ax.set_yticks(range(k), labels=list(names))
        if k <= 12:  # few classes: the counts in the cells
            for t in range(k):
                for p in range(k):
                    ax.text(p, t, f"{int(m[t, p])}", ha="center", va="center", fontsize="small",
                            color="white" if rows[t, p] > 50 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_via(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    return path


def write_class_report(out_dir: str | Path, record: dict[str, Any], confusion: ConfusionMatrix,
                       names: Sequence[str], title: Optional[str] = None) -> dict[str, str]:
    """OUT/per_class.json (class names, per-class accuracy, the confusion matrix) and OUT/confusion.png ->
    their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = {k: record[k] for k in ("checkpoint", "weights", "dataset", "data", "img_size") if k in record}
    body.update(top1=record["metrics"]["top1"], label_names=list(names), per_class=record["per_class"],
                confusion={"rows": "true class", "columns": "predicted class", "counts": confusion.matrix()})
    json_path = out / "per_class.json"
    atomic_write(json_path, json.dumps(body, indent=1) + "\n")
    png = plot_confusion(confusion.matrix(), names, out / "confusion.png",
                         title or f"confusion matrix, top-1 {record['metrics']['top1']:.1f} %\n"
                                  f"{Path(record['checkpoint']).name} ({record['weights']} weights)")
    return {"json": str(json_path), "png": str(png)}
