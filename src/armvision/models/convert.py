"""`armvision convert`: a reference (or any loadable) checkpoint -> armvision's safetensors + config.json directory."""
from __future__ import annotations

import argparse

from .checkpoint import load_model, save_pretrained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..argcheck import POS_INT

    parser.add_argument("checkpoint", help="reference .pth, our training checkpoint, or a .safetensors file")
    parser.add_argument("output", help="directory to write config.json and model.safetensors into")
    parser.add_argument("--ema", action="store_true", help="convert the EMA weights (key model_ema / ema)")
    parser.add_argument("--kind", choices=["pretrainer", "classifier", "mae"], default=None,
                        help="model to build (default: what the checkpoint is); 'classifier' turns a pretraining "
                        "checkpoint into a classifier")
    parser.add_argument("--num-classes", type=POS_INT, default=None,
                        help="with --kind classifier from a pretraining checkpoint")
    parser.add_argument("--img-size", type=POS_INT, default=None,
                        help="build the model at this resolution (position embeddings resampled)")
    parser.add_argument("--global-pool", action="store_true",
                        help="classifier feature = mean of tokens instead of the cls token")


def run(args: argparse.Namespace) -> int:
    from ..argcheck import check_output_dir

    check_output_dir(args.output, "output", create=False)  # before reading a checkpoint of gigabytes
    overrides = {}
    if args.kind:
        overrides["kind"] = args.kind
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    if args.img_size is not None:
        overrides["img_size"] = args.img_size
    if args.global_pool:
        overrides["global_pool"] = True
    model, report = load_model(args.checkpoint, key="model_ema" if args.ema else "model", **overrides)
    out = save_pretrained(model, args.output)
    n = sum(p.numel() for p in model.parameters())
    print(f"{report}\nwrote {type(model).__name__} ({n:,} parameters, config {model.config.kind}) to {out}")
    return 0
