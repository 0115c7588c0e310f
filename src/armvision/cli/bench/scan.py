"""`armvision bench scan`: the selective scan implementations on ARM's shapes (armvision.bench.scan)."""
from __future__ import annotations

import argparse

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ...bench.scan import CLOCKS, DEFAULT_SHAPES, SHAPES

    parser.add_argument("--shapes", nargs="+", default=None, choices=sorted(SHAPES),
                        help=f"shapes to run (default: {' '.join(DEFAULT_SHAPES)})")
    parser.add_argument("--quick", action="store_true", help="tiny shape, 1 warm-up, 2 repeats (seconds)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--chunk", type=int, default=None,
                        help="chunk length of the fast path (default: 32 eager, 16 compiled)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the torch.compile'd fast path (first compile takes ~0.5-1 min)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME",
                        help="skip methods whose name contains one of these words (e.g. pscan reference)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="wall time, or this process's CPU time (use with --threads 1 on a shared machine)")


def run(args: argparse.Namespace) -> int:
    from ...bench.scan import run_scan_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    run_scan_bench(args.shapes, args.quick, args.warmup, args.repeats, args.chunk, args.compile, args.skip,
                   args.device, args.dtype, args.clock)
    return 0
