"""`armvision plot RUN_DIR...`: loss / lr / accuracy curves from the `log.jsonl` of one or several runs.

Each numeric key of the logs is put in a family: keys with "loss" -> loss.png, "lr" -> lr.png, "acc" ->
accuracy.png, any other key -> its own `<key>.png`. A family PNG has one panel per key; every run is one line
in every panel, with the same colour everywhere, so ablations can be compared at a glance. Losses of pretraining
and of finetuning runs (told apart by the config.yaml beside the log) get panels of their own: their units differ
(mean squared error of pixels, NT-Xent, cross-entropy). Panels are titled in words, with the unit on the y axis;
`--smooth` averages the per-step curves of losses and metrics, never the learning rate (a schedule, not a
measurement). The x axis of a key is "optimizer step" when every line carrying that key has a step, else "epoch"
(eval lines), else the line number. Lines with a "kind" other than "train" (the trainer writes "val" lines) name
their metrics "<kind>/<key>" (e.g. "val/loss") unless the key already starts with the kind; the wall-clock "time"
stamp is not plotted. Matplotlib's Agg canvas is used directly (no pyplot, no display needed).
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
    run_kind: str = ""  # "pretraining", "finetuning" or "" (not known)
    loss_unit: str = "loss"


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


def run_kind(path: str | Path) -> tuple[str, str]:
    """(kind, unit of its loss) of the run whose log is at `path`, read from the config.yaml beside it: pretraining
    ("method"), finetuning ("init"), or ("", "loss") when there is none."""
    import yaml

    path = Path(path)
    cfg_path = (path if path.is_dir() else path.parent) / "config.yaml"
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "", "loss"
    if not isinstance(cfg, dict):
        return "", "loss"
    if "method" in cfg:
        model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
        if cfg["method"] == "contrastive":
            return "pretraining", "NT-Xent loss (nats)"
        pixels = "normalised pixels" if model.get("target", "norm_pixel") == "norm_pixel" else "pixels"
        return "pretraining", f"mean squared error ({pixels})"
    if "init" in cfg:
        return "finetuning", "cross-entropy (nats)"
    return "", "loss"


def describe(key: str, kind: str = "", loss_unit: str = "loss") -> tuple[str, str]:
    """(panel title in words, y-axis label with its unit) of a metric key of the logs."""
    name = key.lower()
    val = name.startswith(("val/", "val_")) or "/val_" in name
    base = re.sub(r"^(val/|val_)", "", name)
    ema = base.startswith("ema_")
    base = base.removeprefix("ema_").removeprefix("val_")
    weights = " of the EMA weights" if ema else ""
    if "loss" in base:
        what = f"{kind} loss" if kind else "loss"
        return f"{what}, {'validation images' if val else 'training batches'}{weights}", loss_unit
    m = re.fullmatch(r"acc(\d+)", base)
    if m:
        return f"validation top-{m.group(1)} accuracy{weights}", f"top-{m.group(1)} accuracy (%)"
    if family_of(key) == "lr":
        return "learning rate (layer-wise decay: the top layers' rate)", "learning rate"
    if base == "img_per_s":
        return "training throughput", "images / s"
    return key.replace("_", " "), key


X_LABELS = {"step": "optimizer step", "epoch": "epoch", "line": "log line"}


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


def collect(run_dirs: Sequence[str | Path]) -> list[Series]:
    """Every metric of every run, each told its run's kind and loss unit (config.yaml)."""
    if not run_dirs:
        raise DataError("no run directory given; pass one or more directories that contain log.jsonl")
    dirs = [Path(d) for d in run_dirs]
    series: list[Series] = []
    for d, name in zip(dirs, _run_names(dirs)):
        found = extract_series(read_log(d), name)
        if not found:
            raise DataError(f"{d if d.is_file() else d / LOG_NAME}: no numeric metrics to plot")
        kind, unit = run_kind(d)
        for s in found:
            s.run_kind, s.loss_unit = kind, unit
        series += found
    return series


Panels = dict[tuple[str, str], list[Series]]  # (metric key, run kind of a loss) -> its series, one panel each


def panels_by_family(series: Sequence[Series]) -> dict[str, Panels]:
    """family -> panels; a loss panel per run kind: pretraining and finetuning losses have different units."""
    by_family: dict[str, Panels] = {}
    for s in series:
        family = family_of(s.key)
        panel = (s.key, s.run_kind if family == "loss" else "")
        by_family.setdefault(family, {}).setdefault(panel, []).append(s)
    return by_family


def draw_family(family: str, panels: Panels, colours: dict[str, str], smooth_n: int = 1):
    """One matplotlib Figure (Agg canvas) with a panel per metric; every run one line (with --smooth, a thin raw and
    a thick averaged one, except for the learning rate, a schedule drawn as it is)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(5.0 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for idx, ((key, kind), group) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, idx + 1)
        for s in group:
            c = colours[s.run]
            dense = s.x_name == "step" and len(s.y) > 2 * smooth_n  # per-step curves only
            if smooth_n > 1 and dense and family != "lr":
                ax.plot(s.x, s.y, color=c, alpha=0.25, linewidth=0.8)
                ax.plot(s.x, smooth(s.y, smooth_n), color=c, label=s.run, linewidth=1.5)
            else:
                ax.plot(s.x, s.y, color=c, label=s.run, linewidth=1.5, marker="o" if len(s.y) < 30 else None,
                        markersize=3)
        ax.set_xlabel(" / ".join(X_LABELS.get(x, x) for x in sorted({s.x_name for s in group})))
        title, ylabel = describe(key, kind, group[0].loss_unit if kind else "loss")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if family == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.legend(fontsize="small")
    title = {"loss": "losses", "lr": "learning rate", "accuracy": "accuracy"}.get(family, family.replace("_", " "))
    if smooth_n > 1 and family != "lr":
        title += f" (per-step curves: thin raw, thick a moving average over {smooth_n} points)"
    fig.suptitle(title)
    return fig


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, smooth_n: int = 1) -> list[Path]:
    """Draw one PNG per metric family overlaying all runs; return the written paths (sorted by name)."""
    series = collect(run_dirs)
    colours = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(s.run for s in series))}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for family, panels in panels_by_family(series).items():
        path = out_dir / f"{family}.png"
        draw_family(family, panels, colours, smooth_n).savefig(path, dpi=100)
        written.append(path)
    return sorted(written)


def default_plot_dir(run_dirs: Sequence[str | Path]) -> Path:
    """RUN_DIR/plots for one run (the folder of a log.jsonl given as a file), runs/plots for several."""
    if len(run_dirs) != 1:
        return Path("runs/plots")
    first = Path(run_dirs[0])
    return (first.parent if first.is_file() else first) / "plots"
