"""`armvision visualize`: cluster order, targets and predictions of a pretrained model as PNGs
(armvision.eval.visualize.visualize_checkpoint)."""
from __future__ import annotations

import argparse

from ..argcheck import check_output_dir
from .argtypes import POS_INT
from .common import add_device, hidden_alias, resolve_device
from ..models.config import SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="pretraining checkpoint (.pth, .safetensors or a "
                        "save_pretrained directory)")
    parser.add_argument("--model", default=None, metavar="SIZE", choices=tuple(SIZES),
                        help=f"registry size to build for a reference .pth ({'/'.join(SIZES)}); default: "
                        "read the architecture from the checkpoint")
    parser.add_argument("--ema", action="store_const", dest="key", const="model_ema", default="model",
                        help="the EMA weights of the checkpoint")
    hidden_alias(parser, "--key", "key", choices=("model", "model_ema", "ema"))
    parser.add_argument("--images", nargs="+", default=None, help="image files (default: embedded digits val split)")
    parser.add_argument("--num-images", type=POS_INT, default=4, help="how many embedded images without --images "
                        "(default: 4)")
    parser.add_argument("--output", default="runs/visualize", help="output folder (default runs/visualize)")
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    from ..eval.visualize import PANELS, visualize_checkpoint

    check_output_dir(args.output, "--output", create=False)  # before loading anything
    res = visualize_checkpoint(args.checkpoint, args.output, size=args.model, key=args.key, images=args.images,
                               num_images=args.num_images, device=resolve_device(args.device))
    for p, loss in zip(res.paths, res.losses):
        print(f"{p}  (loss {loss:.4f})")
    print(f"{len(res.paths)} PNG(s), one row of {res.panels} panels each: {', '.join(PANELS)}")
    return 0
