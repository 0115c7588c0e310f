"""`armvision convert`: a reference (or any loadable) checkpoint -> a safetensors + config.json directory
(armvision.models.convert.convert_checkpoint)."""
from __future__ import annotations

import argparse

from ..argcheck import check_output_dir
from ..models.config import CONFIG_CLASSES
from .argtypes import POS_INT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="reference .pth, our training checkpoint, or a .safetensors file")
    parser.add_argument("output", help="directory to write config.json and model.safetensors into")
    parser.add_argument("--ema", action="store_true", help="convert the EMA weights (key model_ema / ema)")
    parser.add_argument("--kind", choices=sorted(CONFIG_CLASSES), default=None,
                        help="model to build (default: what the checkpoint is); 'classifier' turns a pretraining "
                        "checkpoint into a classifier")
    parser.add_argument("--num-classes", type=POS_INT, default=None,
                        help="with --kind classifier from a pretraining checkpoint")
    parser.add_argument("--img-size", type=POS_INT, default=None,
                        help="build the model at this resolution (position embeddings resampled)")
    parser.add_argument("--global-pool", action="store_true",
                        help="classifier feature = mean of tokens instead of the cls token")


def run(args: argparse.Namespace) -> int:
    from ..models.convert import convert_checkpoint

    check_output_dir(args.output, "output", create=False)  # before reading a checkpoint of gigabytes
    model, report, out = convert_checkpoint(args.checkpoint, args.output, ema=args.ema, kind=args.kind,
                                            num_classes=args.num_classes, img_size=args.img_size,
                                            global_pool=args.global_pool)
    n = sum(p.numel() for p in model.parameters())
    print(f"{report}\nwrote {type(model).__name__} ({n:,} parameters, config {model.config.kind}) to {out}")
    return 0
