"""`armvision bench block`: one MambaMLP block per scan backend and without the scan (armvision.bench.block)."""
from __future__ import annotations

import argparse

import torch

from ..common import hidden_alias


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ...bench.block import CASES
    from ...bench.scan import CLOCKS

    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="block shapes")
    parser.add_argument("--dim", type=int, default=768, help="model width (768 = ARM-B)")
    parser.add_argument("--batch-size", dest="batch", type=int, default=8, help="batch size (default: 8)")
    hidden_alias(parser, "--batch", "batch", type=int)
    parser.add_argument("--backends", nargs="+", default=None,
                        help="scan backends to time (default: every available one but 'ref', plus 'none')")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS), help="wall or process CPU time")
    parser.add_argument("--quick", action="store_true", help="width 64, batch 2, 1 repeat (seconds)")


def run(args: argparse.Namespace) -> int:
    from ...bench.block import run_block_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    run_block_bench(args.cases, args.dim, args.batch, args.backends, args.warmup, args.repeats, args.clock,
                    quick=args.quick)
    return 0
