"""`armvision eval`: top-1 / top-5 / loss of a classifier checkpoint (armvision.eval.evaluate.evaluate_checkpoint)."""
from __future__ import annotations

import argparse
from typing import Any, Optional

from ..argcheck import check_output_file
from .argtypes import DEVICE, FRACTION, NONNEG_INT, POS_INT
from ..constants import DEFAULT_CROP_PCT
from ..models.config import SIZES


def default_device() -> str:
    """cuda when available, else cpu (the default of --device)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
    parser.add_argument("--device", type=DEVICE, default=default_device(),
                        help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--num-workers", type=NONNEG_INT, default=4, help="data-loading workers (default: 4)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--model", default=None, choices=tuple(SIZES),
                        help="size name, checked against the checkpoint's widths")
    parser.add_argument("--num-classes", type=POS_INT, default=None, help="default: from the checkpoint's head")
    parser.add_argument("--output-json", default=None, help="append the result record to this JSON list")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


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


def run(args: argparse.Namespace) -> int:
    from ..eval.evaluate import evaluate_checkpoint, format_table

    check_output_json(args.output_json)
    record = evaluate_checkpoint(
        args.checkpoint, data=args.data, dataset=args.dataset, ema=args.ema, img_size=args.img_size,
        batch_size=args.batch_size, device=args.device, num_workers=args.num_workers, model_size=args.model,
        num_classes=args.num_classes, crop_pct=args.crop_pct, amp=args.amp, progress=not args.no_progress,
    )
    report(format_table([record]), record, args.output_json)
    return 0
