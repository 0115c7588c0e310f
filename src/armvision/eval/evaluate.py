"""`armvision eval`: top-1 / top-5 / loss of a classifier checkpoint on an ImageFolder or a robustness set.

Accepts our training checkpoints (`--ema` for the EMA weights), `save_pretrained` directories and reference
finetuning .pth files, at any resolution (`--img-size`: the position embedding is resampled). `--dataset` picks the
class handling (see robustness.py); without `--data` the embedded digits val split is used.
"""
from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..constants import DEFAULT_CROP_PCT
from ..errors import CheckpointError, ConfigError, DataError
from ..fileio import atomic_write
from ..models.config import img_hw
from .features import model_kind
from .metrics import ClassificationMeter
from .robustness import DATASETS, ClassMap, build_class_map


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    class_map: Optional[ClassMap] = None,
    device: torch.device | str = "cpu",
    amp: bool = False,
    progress: bool = True,
    desc: str = "eval",
) -> dict[str, float]:
    """Stream `loader` through `model` -> {"top1", "top5", "loss", "num_images"} (summed over ranks if distributed)."""
    model.eval()
    device = torch.device(device)
    meter = ClassificationMeter((1, 5), device=device)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True)
    for imgs, target in loader:
        imgs, target = imgs.to(device, non_blocking=True), torch.as_tensor(target).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(imgs)  # (B, num_classes)
        if class_map is not None:
            logits, target = class_map.restrict(logits), class_map.targets(target)  # (B, K), (B,)
        meter.update(logits, target)
    meter.all_reduce()
    return meter.compute()


def load_model_for_eval(
    checkpoint: str | Path,
    ema: bool = False,
    img_size: Optional[int] = None,
    model_size: Optional[str] = None,
    num_classes: Optional[int] = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, info) from our checkpoint, a save_pretrained directory or a reference .pth.

    Sizes of reference files are read from the tensor shapes; `model_size` (a registry name) is checked against them.
    """
    from ..models import SIZES, load_model, read_checkpoint

    overrides: dict[str, Any] = {}
    if img_size is not None:
        overrides["img_size"] = img_size
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    ckpt = read_checkpoint(str(checkpoint))  # any unreadable file is already a CheckpointError naming it
    if not any(isinstance(v, dict) for v in ckpt.values()) and not all(torch.is_tensor(v) for v in ckpt.values()):
        raise CheckpointError(f"{checkpoint} holds no state dict (keys: {sorted(ckpt)[:8]})")
    try:
        model, report = load_model(ckpt, key="ema" if ema else "model", **overrides)
    except (CheckpointError, ConfigError) as e:  # name the file: load_model only sees the dict
        msg = str(e).replace("the given dict", str(checkpoint))
        raise CheckpointError(msg if str(checkpoint) in msg else f"{checkpoint}: {msg}") from None
    cfg = model.config
    if model_size is not None:
        if model_size not in SIZES:
            raise ConfigError(f"unknown --model {model_size!r}; choose one of {', '.join(SIZES)}")
        if SIZES[model_size] != (cfg.embed_dim, cfg.depth):
            raise CheckpointError(f"{checkpoint} holds a {cfg.embed_dim}-wide, {cfg.depth}-deep model, not "
                                  f"--model {model_size} {SIZES[model_size]}; drop --model or give the right size")
    return model.eval(), {"source": report.source, "load_report": str(report)}


def build_eval_dataset(data: Optional[str], img_size: tuple[int, int], crop_pct: float = DEFAULT_CROP_PCT):
    """The dataset to evaluate: DIR/val (or DIR itself) as an ImageFolder, or the embedded digits val split."""
    from ..data import SafeImageFolder, embedded_digits, eval_transform

    h, w = img_size
    if h != w:
        raise ConfigError(f"evaluation needs a square image size, got {h}x{w}")
    transform = eval_transform(h, crop_pct=crop_pct)
    if data is None:
        return embedded_digits("val", img_size=h, transform=transform)
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"--data {data}: folder does not exist; give an ImageFolder root (one sub-folder per class) "
                        f"or a folder holding val/, or omit --data to use the embedded digits")
    if (root / "val").is_dir():
        root = root / "val"
    return SafeImageFolder(root, transform=transform)


def _check_request(data: Optional[str], dataset: str, device: str) -> torch.device:
    """Fail on a bad dataset name, a missing data folder or an absent CUDA before any model is loaded."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown --dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if data is None and dataset != "folder":
        raise ConfigError(f"--dataset {dataset} needs --data DIR (the folder of that dataset)")
    if data is not None and not Path(data).is_dir():
        build_eval_dataset(data, (1, 1))  # raises the DataError naming the folder
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return dev


def _class_map(checkpoint: str | Path, model: nn.Module, ds, data: Optional[str], dataset: str) -> Optional[ClassMap]:
    """How the model's logits map to the dataset's classes (None: one to one, checked for the embedded digits)."""
    classes = list(getattr(ds, "classes", []))
    if data is not None:
        return build_class_map(dataset, classes, model.num_classes, root=str(getattr(ds, "root", data)))
    if model.num_classes < len(classes):
        raise CheckpointError(f"{checkpoint} predicts {model.num_classes} classes, the embedded digits have "
                              f"{len(classes)}; give --data with the classes this model was trained on")
    return None


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: Optional[str] = None,
    dataset: str = "folder",
    ema: bool = False,
    img_size: Optional[int] = None,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: int = 0,
    model_size: Optional[str] = None,
    num_classes: Optional[int] = None,
    crop_pct: float = DEFAULT_CROP_PCT,
    amp: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate one checkpoint -> a JSON-able record (checkpoint, dataset, img_size, metrics, date, versions)."""
    dev = _check_request(data, dataset, device)
    model, info = load_model_for_eval(checkpoint, ema, img_size, model_size, num_classes)
    if model_kind(model) != "classifier":
        raise CheckpointError(f"{checkpoint} is a {model_kind(model)} checkpoint, not a classifier: finetune it "
                              f"first (armvision finetune) or measure its features with armvision probe")
    size = img_hw(model.config.img_size)
    ds = build_eval_dataset(data, size, crop_pct)
    class_map = _class_map(checkpoint, model, ds, data, dataset)
    model.to(dev)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=dev.type == "cuda")
    t0 = time.perf_counter()
    metrics = evaluate(model, loader, class_map, dev, amp=amp, progress=progress,
                       desc=f"eval {Path(checkpoint).name}")
    seconds = time.perf_counter() - t0
    from ..version import __version__

    return {
        "checkpoint": str(checkpoint),
        "weights": "ema" if ema else "model",
        "source": info.get("source"),
        "dataset": dataset if data is not None else "embedded:digits",
        "data": str(getattr(ds, "root", data)),
        "img_size": size[0],
        "metrics": metrics,
        "skipped_files": len(getattr(ds, "skipped", [])),
        "seconds": round(seconds, 2),
        "device": str(dev),
        "amp": amp,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "armvision": __version__,
    }


def format_table(records: list[dict[str, Any]]) -> str:
    """Records -> an aligned text table."""
    head = ["checkpoint", "weights", "dataset", "img", "images", "top1", "top5", "loss"]
    rows = [[Path(r["checkpoint"]).name, r["weights"], r["dataset"], str(r["img_size"]),
             str(r["metrics"]["num_images"]), f"{r['metrics']['top1']:.2f}", f"{r['metrics']['top5']:.2f}",
             f"{r['metrics']['loss']:.4f}"] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def append_json(path: str | Path, record: dict[str, Any]) -> None:
    """Append `record` to the JSON list in `path` (created if missing)."""
    path = Path(path)
    records = []
    if path.exists() and path.stat().st_size > 0:
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"--output-json {path} exists but is not JSON ({e}); give another file") from e
        if not isinstance(records, list):
            raise ConfigError(f"--output-json {path} holds a JSON {type(records).__name__}, not a list of results")
    records.append(record)
    atomic_write(path, json.dumps(records, indent=2) + "\n")
