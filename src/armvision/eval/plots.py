"""`armvision plot RUN_DIR...`: loss / lr / accuracy curves from the `log.jsonl` of one or several runs.

Each numeric key of the logs is put in a family: keys with "loss" -> loss.png, "lr" -> lr.png, "acc" ->
accuracy.png, any other key -> its own `<key>.png`. A family PNG has one panel per key; every run is one line
in every panel, with the same colour everywhere, so ablations can be compared at a glance. The x axis of a key is
"step" when every line carrying that key has a step, else "epoch" (eval lines), else the line number. Lines
with a "kind" other than "train" (the trainer writes "val" lines) name their metrics "<kind>/<key>" (e.g.
"val/loss") unless the key already starts with the kind; the wall-clock "time" stamp is not plotted.
Matplotlib's Agg canvas is used directly (no pyplot, no display needed).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import DataError

LOG_NAME = "log.jsonl"
X_KEYS = ("step", "epoch")
SKIP_KEYS = ("time",)  # wall-clock stamps written on every line: not a metric
FAMILIES = ("loss", "lr", "accuracy")


@dataclass
class Series:
    """One metric of one run: y values against x values on the axis named `x_name`."""

    run: str
    key: str
    x_name: str
    x: list[float]
    y: list[float]


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_log(path: str | Path) -> list[dict]:
    """Parse a log.jsonl file: one JSON object per line, blank lines ignored.

    A malformed last line is skipped silently (the run may be writing it); a malformed line anywhere else raises
    DataError naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such run directory or file; pass run directories that contain {LOG_NAME}")
    if path.is_dir():
        path = path / LOG_NAME
        if not path.is_file():
            raise DataError(f"{path}: not found; is {path.parent} a run directory (training writes {LOG_NAME})?")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):  # truncated last line of a run that is still writing
                break
            raise DataError(f"{path}:{i}: not valid JSON ({e.msg}); fix or delete that line") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{i}: expected a JSON object per line, got {type(rec).__name__}")
        records.append(rec)
    return records


def family_of(key: str) -> str:
    """Which PNG a metric goes to: 'loss', 'lr', 'accuracy' or the key itself."""
    k = key.lower().rsplit("/", 1)[-1]
    if "loss" in k:
        return "loss"
    if k == "lr" or k.startswith("lr_") or k.endswith("_lr") or "learning_rate" in k:
        return "lr"
    if "acc" in k:
        return "accuracy"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def _metrics(rec: dict) -> dict[str, float]:
    """Numeric metrics of one log line, named "<kind>/<key>" for lines of another kind than "train"
    (e.g. "val/loss"), unless the key already says it ("val_acc1")."""
    kind = rec.get("kind")
    out = {}
    for k, v in rec.items():
        if k in X_KEYS or k in SKIP_KEYS or not _is_number(v):
            continue
        name = k if not isinstance(kind, str) or kind == "train" or k.startswith(kind) else f"{kind}/{k}"
        out[name] = float(v)
    return out


def extract_series(records: Sequence[dict], run: str) -> list[Series]:
    """All numeric metrics of one run as Series, in the order their names first appear."""
    per_line = [_metrics(r) for r in records]
    names = list(dict.fromkeys(k for m in per_line for k in m))
    out = []
    for name in names:
        rows = [(i, r, m[name]) for i, (r, m) in enumerate(zip(records, per_line)) if name in m]
        x_name = next((xk for xk in X_KEYS if all(_is_number(r.get(xk)) for _, r, _ in rows)), "line")
        x = [float(r[x_name]) if x_name != "line" else float(i) for i, r, _ in rows]
        out.append(Series(run, name, x_name, x, [v for _, _, v in rows]))
    return out


def smooth(y: Sequence[float], n: int) -> list[float]:
    """Trailing moving average over the last n finite values (n <= 1: unchanged)."""
    if n <= 1:
        return list(y)
    out, window = [], []
    for v in y:
        if math.isfinite(v):
            window.append(v)
            window = window[-n:]
        out.append(sum(window) / len(window) if window else float("nan"))
    return out


def _run_names(run_dirs: Sequence[Path]) -> list[str]:
    """Legend labels: directory names, or the whole path where two runs share a name."""
    names = [(d.parent.name if d.name == LOG_NAME else d.name) or str(d) for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    return names


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, smooth_n: int = 1) -> list[Path]:
    """Draw one PNG per metric family overlaying all runs; return the written paths (sorted by name)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not run_dirs:
        raise DataError("no run directory given; pass one or more directories that contain log.jsonl")
    dirs = [Path(d) for d in run_dirs]
    series: list[Series] = []
    for d, name in zip(dirs, _run_names(dirs)):
        found = extract_series(read_log(d), name)
        if not found:
            raise DataError(f"{d if d.is_file() else d / LOG_NAME}: no numeric metrics to plot")
        series += found
    colours = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(s.run for s in series))}
    by_family: dict[str, dict[str, list[Series]]] = {}
    for s in series:
        by_family.setdefault(family_of(s.key), {}).setdefault(s.key, []).append(s)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for family, by_key in by_family.items():
        n = len(by_key)
        cols = min(n, 3)
        rows = math.ceil(n / cols)
        fig = Figure(figsize=(5.0 * cols, 3.6 * rows), layout="constrained")
        FigureCanvasAgg(fig)
        for idx, (key, group) in enumerate(by_key.items()):
            ax = fig.add_subplot(rows, cols, idx + 1)
            for s in group:
                c = colours[s.run]
                if smooth_n > 1 and s.x_name == "step" and len(s.y) > 2 * smooth_n:  # dense training curves only
                    ax.plot(s.x, s.y, color=c, alpha=0.25, linewidth=0.8)
                    ax.plot(s.x, smooth(s.y, smooth_n), color=c, label=s.run, linewidth=1.5)
                else:
                    ax.plot(s.x, s.y, color=c, label=s.run, linewidth=1.5, marker="o" if len(s.y) < 30 else None,
                            markersize=3)
            xs = {s.x_name for s in group}
            ax.set_xlabel(" / ".join(sorted(xs)))
            ax.set_title(key)
            ax.grid(alpha=0.3)
            if family == "lr":
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
            ax.legend(fontsize="small")
        title = family + (f" (per-step curves: moving average over {smooth_n})" if smooth_n > 1 else "")
        fig.suptitle(title)
        path = out_dir / f"{family}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return sorted(written)


def default_plot_dir(run_dirs: Sequence[str | Path]) -> Path:
    """RUN_DIR/plots for one run (the folder of a log.jsonl given as a file), runs/plots for several."""
    if len(run_dirs) != 1:
        return Path("runs/plots")
    first = Path(run_dirs[0])
    return (first.parent if first.is_file() else first) / "plots"
