"""`armvision bench model`: images/s, memory and MFU of ARM models against timm ViTs (armvision.bench.model)."""
from __future__ import annotations

import argparse

import torch

from ...bench.model import BENCH_SIZES, FAMILIES, MODES, Case, make_cases
from ..common import hidden_alias


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                        help="model families (default: all); ARM = classifier, ARM-pretrain = pretrainer, ViT = timm")
    parser.add_argument("--sizes", nargs="+", default=list(BENCH_SIZES), choices=BENCH_SIZES, help="sizes (default: all)")
    parser.add_argument("--img-size", nargs="+", type=int, default=None,
                        help="image sizes for every model (default: 224, pretrainer 192)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default: 8)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                        help="forward (eval, no grad) and/or train (forward + backward + AdamW step)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per case")
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations per case")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="bfloat16 = autocast (weights stay float32)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="one fresh process per case (default: on for CPU, for exact peak memory)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test in seconds: tiny sizes, 64 px (pretrainer 128), batch 2, 1 warm-up, "
                        "2 repeats, 1024 matmul for the peak")
    parser.add_argument("--output-json", dest="json", default=None, metavar="FILE",
                        help="also write all results and the environment to this JSON file")
    hidden_alias(parser, "--json", "json")


def cases_from_args(args: argparse.Namespace) -> tuple[list[Case], list[str]]:
    """The cases to run and notes on the combinations skipped (armvision.bench.model.make_cases)."""
    return make_cases(args.models, args.sizes, args.img_size, args.batch_size, args.modes, args.warmup, args.repeats,
                      args.device, args.dtype, args.threads, quick=args.quick)


def run(args: argparse.Namespace) -> int:
    from ...bench.model import run_model_bench

    cases, notes = cases_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_model_bench(cases, notes, isolate=args.isolate, json_path=args.json)
    return 0
