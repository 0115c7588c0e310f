"""`armvision predict`: the most probable classes of image files, by name, from a classifier checkpoint, a
save_pretrained folder, a Hub id or an exported ONNX file (armvision.deploy.predict).

    armvision predict --checkpoint runs/ft/checkpoint-best.pth cat.jpg photos/ "more/*.png"
    armvision predict --checkpoint pets.onnx photos/ --top-k 1 --json
"""
from __future__ import annotations

import argparse
import json

from ..errors import DataError
from .argtypes import POS_INT
from .common import add_device, add_num_workers, add_progress, resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files, folders (searched recursively) or globs such as 'photos/*.jpg'")
    parser.add_argument("--checkpoint", required=True, help="classifier: a training checkpoint, a save_pretrained "
                        "folder, a reference finetuning .pth, hf-hub:owner/name, or an exported .onnx file")
    parser.add_argument("--top-k", type=POS_INT, default=5, help="classes per image, most probable first (default: 5)")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON instead of a table")
    parser.add_argument("--ema", action="store_true", help="the EMA weights of a training checkpoint")
    parser.add_argument("--batch-size", type=POS_INT, default=32, help="images per batch (default: 32)")
    add_device(parser)
    add_num_workers(parser)
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from ..deploy.predict import Predictor, format_predictions, predictions_json

    predictor = Predictor.load(args.checkpoint, ema=args.ema, device=resolve_device(args.device))
    preds = predictor(args.images, top_k=args.top_k, batch_size=args.batch_size, num_workers=args.num_workers,
                      progress=args.progress and not args.json)
    if preds and all(p.error is not None for p in preds):
        raise DataError(f"none of the {len(preds)} image(s) could be read (first: {preds[0].image}: {preds[0].error})")
    if args.json:
        print(json.dumps(predictions_json(preds), indent=1))
    else:
        print(format_predictions(preds))
    return 0
