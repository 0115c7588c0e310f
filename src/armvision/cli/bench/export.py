"""`armvision bench export`: exported ARM (onnxruntime) and torch.compile vs eager and a ViT (armvision.bench.export)."""
from __future__ import annotations

import argparse

from ..argtypes import NONNEG_INT, POS_INT
from ..common import hidden_alias


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="base", choices=["tiny", "small", "base"],
                        help="ARM and ViT size (default base)")
    parser.add_argument("--img-size", type=POS_INT, default=224, help="image size (default 224)")
    parser.add_argument("--batch-size", dest="batch", type=POS_INT, nargs="+", default=[1, 8],
                        help="batch sizes (default 1 8)")
    hidden_alias(parser, "--batch", "batch", type=POS_INT, nargs="+")
    parser.add_argument("--threads", type=POS_INT, default=2,
                        help="intra-op threads, torch and onnxruntime (default 2)")
    parser.add_argument("--repeats", type=POS_INT, default=5, help="timed rounds per batch (default 5)")
    parser.add_argument("--warmup", type=NONNEG_INT, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--no-vit", action="store_true", help="skip the timm ViT baseline")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--train", action="store_true", help="also time a forward+backward step, eager vs compiled")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny models, 64 px, 1 repeat")
    parser.add_argument("--work-dir", default=None, help="where to write the .onnx files (default: a temp folder)")
    parser.add_argument("--output-json", dest="json", default=None, metavar="FILE",
                        help="also write the results to this JSON file")
    hidden_alias(parser, "--json", "json")


def run(args: argparse.Namespace) -> int:
    from ...bench.export import run_export_bench

    run_export_bench(args.size, args.img_size, args.batch, args.threads, args.repeats, args.warmup,
                     vit=not args.no_vit, compile=not args.no_compile, train=args.train, work_dir=args.work_dir,
                     json_path=args.json, quick=args.quick)
    return 0
