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
from ..fields import parse_json, read_text
from ..fileio import atomic_write
from ..progress import track
from .classes import per_class_rows, write_class_report
from .features import model_kind
from .labels import LABEL_NAMES, names_for, read_label_names
from .metrics import ClassificationMeter, ConfusionMatrix
from .robustness import DATASETS, ClassMap, build_class_map


def autocast_dtype(precision: str, device: torch.device) -> tuple[Optional[torch.dtype], bool]:
    """(autocast dtype or None for fp32, needs a GradScaler?) of --precision on `device`: auto is bf16 on CUDA
    that has it, fp16 on older CUDA, fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        return torch.float16, True
    raise ConfigError(f"--precision {precision}: choose auto, fp32, bf16 or fp16")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    class_map: Optional[ClassMap] = None,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    progress: bool = True,
    desc: str = "eval",
    confusion: Optional[ConfusionMatrix] = None,
) -> dict[str, float]:
    """Stream `loader` through `model` -> {"top1", "top5", "loss", "num_images"} (summed over ranks if distributed);
    `confusion` (if given) counts the top-1 predictions of each class."""
    model.eval()
    device = torch.device(device)
    dtype, _ = autocast_dtype(precision, device)
    meter = ClassificationMeter((1, 5), device=device)
    for imgs, target in track(loader, desc, enabled=progress):
        imgs, target = imgs.to(device, non_blocking=True), torch.as_tensor(target).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(imgs)  # (B, num_classes)
        if class_map is not None:
            logits, target = class_map.restrict(logits), class_map.targets(target)  # (B, K), (B,)
        meter.update(logits, target)
        if confusion is not None:
            confusion.update(logits, target)
    meter.all_reduce()
    if confusion is not None:
        confusion.all_reduce()
    return meter.compute()


def load_model_from(ckpt: dict[str, Any], where: str | Path, key: str = "model", **overrides: Any):
    """`load_model` of a checkpoint dict already read from `where`; its errors name that file."""
    from ..models import load_model

    try:
        return load_model(ckpt, key=key, where=str(where), **overrides)
    except (CheckpointError, ConfigError) as e:  # name the file: load_model only sees the dict
        msg = str(e).replace("the given dict", str(where))
        raise CheckpointError(msg if str(where) in msg else f"{where}: {msg}") from None


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
    from ..models import SIZES, read_checkpoint
    from ..models.checkpoint import require_finite

    overrides: dict[str, Any] = {}
    if img_size is not None:
        overrides["img_size"] = img_size
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    ckpt = read_checkpoint(str(checkpoint))  # any unreadable file is already a CheckpointError naming it
    if not any(isinstance(v, dict) for v in ckpt.values()) and not all(torch.is_tensor(v) for v in ckpt.values()):
        raise CheckpointError(f"{checkpoint} holds no state dict (keys: {sorted(ckpt)[:8]})")
    model, report = load_model_from(ckpt, checkpoint, key="ema" if ema else "model", **overrides)
    require_finite(dict(model.named_parameters()), str(checkpoint))  # NaN weights: no accuracy to report
    cfg = model.config
    if model_size is not None:
        if model_size not in SIZES:
            raise ConfigError(f"unknown --model {model_size!r}; choose one of {', '.join(SIZES)}")
        if SIZES[model_size] != (cfg.embed_dim, cfg.depth):
            raise CheckpointError(f"{checkpoint} holds a {cfg.embed_dim}-wide, {cfg.depth}-deep model, not "
                                  f"--model {model_size} {SIZES[model_size]}; drop --model or give the right size")
    names = read_label_names(checkpoint, model)
    return model.eval(), {"source": report.source, "load_report": str(report), LABEL_NAMES: names}


def build_eval_dataset(data: Optional[str], img_size: tuple[int, int], crop_pct: float = DEFAULT_CROP_PCT):
    """The dataset to evaluate: DIR/val (or DIR itself) as an ImageFolder, the val split of webdataset shards or of a
    saved Hugging Face dataset (a dataset without one: all of it), or the embedded digits val split."""
    from ..data import SafeImageFolder, build_dataset, embedded_digits, eval_transform, split_exists
    from ..data.hf import is_hf_dataset
    from ..data.streams import find_shards

    h, w = img_size
    if h != w:
        raise ConfigError(f"evaluation needs a square image size, got {h}x{w}")
    transform = eval_transform(h, crop_pct=crop_pct)
    if data is None:
        return embedded_digits("val", img_size=h, transform=transform)
    if is_hf_dataset(data) or find_shards(data, "val"):
        split = "val" if split_exists(data, "val") else "train"
        return build_dataset(data, split, transform, train=False)
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"--data {data}: folder does not exist; give an ImageFolder root (one sub-folder per class), "
                        f"a folder holding val/ (ImageFolder or webdataset shards), a saved Hugging Face dataset, or "
                        f"omit --data to use the embedded digits")
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


def _class_map(checkpoint: str | Path, model: nn.Module, ds, data: Optional[str], dataset: str,
               names: Optional[list[str]] = None) -> Optional[ClassMap]:
    """How the model's logits map to the dataset's classes (None: one to one, checked for the embedded digits);
    `names`: the model's class names (a folder's classes are then matched by name)."""
    classes = list(getattr(ds, "classes", []))
    if data is not None:
        return build_class_map(dataset, classes, model.num_classes, root=str(getattr(ds, "root", data)),
                               label_names=names)
    if model.num_classes < len(classes):
        raise CheckpointError(f"{checkpoint} predicts {model.num_classes} classes, the embedded digits have "
                              f"{len(classes)}; give --data with the classes this model was trained on")
    return None


def _eval_names(model: nn.Module, stored: Optional[list[str]], ds, data: Optional[str], dataset: str,
                class_map: Optional[ClassMap]) -> list[str]:
    """Names of the classes scored (the logits kept by `class_map`): the model's stored names, else the folder's
    class names when they line up one to one with the logits, else ImageNet's or the class ids."""
    k = model.num_classes
    classes = list(getattr(ds, "classes", []))
    if stored is None and len(classes) == k and dataset == "folder" and not all(c.isdigit() for c in classes):
        stored = classes
    names = names_for(k, stored) if stored is not None or k == 1000 else [str(i) for i in range(k)]
    if class_map is not None and class_map.logit_mask is not None:
        names = [names[int(i)] for i in class_map.logit_mask]
    return names


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: Optional[str] = None,
    dataset: str = "folder",
    ema: bool = False,
    img_size: Optional[int] = None,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: Optional[int] = 0,
    model_size: Optional[str] = None,
    num_classes: Optional[int] = None,
    crop_pct: float = DEFAULT_CROP_PCT,
    precision: str = "fp32",
    progress: bool = True,
    output: Optional[str | Path] = None,
) -> dict[str, Any]:
    """Evaluate one checkpoint -> a JSON-able record (checkpoint, dataset, img_size, metrics, per-class accuracy with
    the class names, date, versions). `output`: a folder for per_class.json and confusion.png (their paths are in
    the record's "class_report"). num_workers None: the default for this machine."""
    from ..data.loading import resolve_num_workers

    dev = _check_request(data, dataset, device)
    model, info = load_model_for_eval(checkpoint, ema, img_size, model_size, num_classes)
    if model_kind(model) != "classifier":
        raise CheckpointError(f"{checkpoint} is a {model_kind(model)} checkpoint, not a classifier: finetune it "
                              f"first (armvision finetune) or measure its features with armvision probe")
    size = model.config.img_size  # (height, width)
    ds = build_eval_dataset(data, size, crop_pct)
    class_map = _class_map(checkpoint, model, ds, data, dataset, info[LABEL_NAMES])
    names = _eval_names(model, info[LABEL_NAMES], ds, data, dataset, class_map)
    confusion = ConfusionMatrix(len(names), device=dev)
    model.to(dev)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=resolve_num_workers(num_workers),
                        pin_memory=dev.type == "cuda")
    t0 = time.perf_counter()
    metrics = evaluate(model, loader, class_map, dev, precision=precision, progress=progress,
                       desc=f"eval {Path(checkpoint).name}", confusion=confusion)
    record = _record(checkpoint, ema, info, dataset, data, ds, size, metrics, time.perf_counter() - t0, dev,
                     precision)
    record["per_class"] = per_class_rows(confusion, names)
    if output is not None:
        record["class_report"] = write_class_report(output, record, confusion, names)
    return record


def _record(checkpoint, ema, info, dataset, data, ds, size, metrics, seconds, dev, precision) -> dict[str, Any]:
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
        "precision": precision,
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
        records = parse_json(read_text(path, f"--output-json {path}"), f"--output-json {path}")
        if not isinstance(records, list):
            raise ConfigError(f"--output-json {path} holds a JSON {type(records).__name__}, not a list of results")
    records.append(record)
    atomic_write(path, json.dumps(records, indent=2) + "\n")
