"""`armvision bench train-step`: one pretraining optimizer step vs data loading (armvision.bench.train_step)."""
from __future__ import annotations

import argparse

import torch

from ..common import hidden_alias


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], help="pretrainer sizes (default: tiny base)")
    parser.add_argument("--img-size", type=int, default=192, help="image size (default: 192, the reference)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of the step benchmark (default: 8)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (default: 3)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="autocast as in armvision pretrain (auto: bf16 on CUDA with bf16, fp32 on CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--num-workers", dest="workers", type=int, nargs="+", default=[0, 1, 2],
                        help="data-loading workers to time (default: 0 1 2)")
    hidden_alias(parser, "--workers", "workers", type=int, nargs="+")
    parser.add_argument("--data-images", type=int, default=128, help="JPEGs in the temporary folder (default: 128)")
    parser.add_argument("--data-batch-size", type=int, default=32, help="data loader batch (default: 32)")
    parser.add_argument("--quick", action="store_true", help="tiny only, 128 px, 32 JPEGs, workers 0 (smoke test)")
    parser.add_argument("--output-json", dest="json", metavar="FILE", help="also write the results as JSON")
    hidden_alias(parser, "--json", "json")


def run(args: argparse.Namespace) -> int:
    from ...bench.train_step import run_train_step_bench

    if args.quick:
        args.sizes, args.img_size, args.data_images, args.workers = ["tiny"], 128, 32, [0]
        args.data_batch_size = min(args.data_batch_size, 8)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_train_step_bench(args.sizes, args.img_size, args.batch_size, args.warmup, args.repeats, args.precision,
                         args.device, args.workers, args.data_images, args.data_batch_size, args.json,
                         settings=vars(args))
    return 0
