"""`armvision eval`: top-1 / top-5 / loss of a classifier checkpoint (armvision.eval.evaluate.evaluate_checkpoint)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Optional

from ..argcheck import check_output_dir, check_output_file
from .argtypes import FRACTION, POS_INT
from .common import add_device, add_num_workers, add_output_json, add_precision, add_progress, resolve_device
from ..constants import DEFAULT_CROP_PCT
from ..models.config import SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..eval.robustness import DATASETS

    parser.add_argument("--checkpoint", required=True,
                        help="our .pth, a save_pretrained directory, or a reference finetuning .pth")
    parser.add_argument("--data", default=None,
                        help="ImageFolder root (DIR/val is used if present); default: the embedded digits val split")
    parser.add_argument("--dataset", default="folder", choices=DATASETS,
                        help="class handling: imagenet-a/-r restrict the 1000 logits to their 200 classes; "
                             "folder: the folder's classes in sorted order (integer names = class indices)")
    parser.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    parser.add_argument("--img-size", type=POS_INT, default=None, help="resolution (default: the checkpoint's)")
    parser.add_argument("--crop-pct", type=FRACTION, default=DEFAULT_CROP_PCT,
                        help="center-crop fraction in (0, 1]: resize to size / crop-pct, then crop "
                        f"(default: {DEFAULT_CROP_PCT})")
    parser.add_argument("--batch-size", type=POS_INT, default=64, help="images per batch (default: 64)")
    add_device(parser)
    add_num_workers(parser)
    add_precision(parser)
    parser.add_argument("--model", default=None, choices=tuple(SIZES),
                        help="size name, checked against the checkpoint's widths")
    parser.add_argument("--num-classes", type=POS_INT, default=None,
                        help="classes of the model's head (default: the checkpoint's)")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="folder for the per-class accuracy and confusion matrix (JSON + PNG) "
                        "(default: runs/eval/<checkpoint's run>-<checkpoint>)")
    add_output_json(parser)
    add_progress(parser)


def check_output_json(path: Optional[str]) -> None:
    """Before loading anything: a result that cannot be saved is a wasted evaluation."""
    if path:
        check_output_file(path, "--output-json")


def report(text: str, record: dict[str, Any], output_json: Optional[str]) -> None:
    """Print the result and append its record to --output-json when given."""
    from ..eval.evaluate import append_json

    print(text)
    if output_json:
        append_json(output_json, record)
        print(f"appended to {output_json}")


def default_eval_output(checkpoint: str, ema: bool) -> Path:
    """runs/eval/<the checkpoint's folder>-<its name>[-ema]: one folder per evaluated checkpoint."""
    path = Path(checkpoint.removeprefix("hf-hub:"))
    name = f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem
    return Path("runs/eval") / (re.sub(r"[^A-Za-z0-9_.@-]+", "_", name) + ("-ema" if ema else ""))


def run(args: argparse.Namespace) -> int:
    from ..eval.classes import format_per_class
    from ..eval.evaluate import evaluate_checkpoint, format_table

    output = Path(args.output) if args.output else default_eval_output(args.checkpoint, args.ema)
    check_output_dir(output, "--output", create=False)
    check_output_json(args.output_json)
    record = evaluate_checkpoint(
        args.checkpoint, data=args.data, dataset=args.dataset, ema=args.ema, img_size=args.img_size,
        batch_size=args.batch_size, device=resolve_device(args.device), num_workers=args.num_workers,
        model_size=args.model, num_classes=args.num_classes, crop_pct=args.crop_pct, precision=args.precision,
        progress=args.progress, output=output,
    )
    paths = record["class_report"]
    report(f"{format_table([record])}\n{format_per_class(record['per_class'])}\n"
           f"per-class accuracy and confusion matrix: {paths['json']}, {paths['png']}", record, args.output_json)
    return 0
