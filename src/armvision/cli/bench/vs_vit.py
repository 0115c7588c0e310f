"""`armvision bench vs-vit`: the ARM classifier against timm's ViT of the same size, interleaved, one grid of
precisions x image sizes x batch sizes x forward / train step (armvision.bench.vs_vit)."""
from __future__ import annotations

import argparse
import json

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ...bench.vs_vit import CLOCKS, MODES, PRECISIONS, VIT

    parser.add_argument("--size", default="base", choices=list(VIT), help="model size, ARM and ViT alike")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=list(PRECISIONS),
                        help="fp32, and/or bf16 (torch.autocast on the CPU)")
    parser.add_argument("--img-size", nargs="+", type=int, default=[224], help="image sizes in pixels")
    parser.add_argument("--batch-size", nargs="+", type=int, default=[8], help="batch sizes")
    parser.add_argument("--mode", nargs="+", default=list(MODES), choices=list(MODES),
                        help="forward (eval, no grad) and/or train (forward, backward, AdamW step)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per cell, after one warm-up round")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1: CPU time is robust to "
                        "other processes; more: use --clock wall)")
    parser.add_argument("--clock", default="cpu", choices=sorted(CLOCKS), help="process CPU time or wall-clock")
    parser.add_argument("--output-json", default=None, help="write the cells and the machine line as JSON here")


def run(args: argparse.Namespace) -> int:
    from ...bench.machine import isa_line
    from ...bench.vs_vit import format_cell, run_grid
    from ...errors import ConfigError

    if args.repeats < 1 or args.threads < 1 or min(args.img_size) < 16 or min(args.batch_size) < 1:
        raise ConfigError("--repeats, --threads and --batch-size must be >= 1 and --img-size >= 16")
    torch.set_num_threads(args.threads)
    machine = isa_line()
    print(f"# {machine}")
    print(f"# {args.size}, {args.threads} thread(s), {args.clock} clock, median of {args.repeats} (interleaved)")
    cells = run_grid(args.size, args.precision, args.img_size, args.batch_size, args.mode, args.repeats,
                     args.clock, report=lambda c: print(format_cell(c), flush=True))
    if args.output_json:
        from ...fileio import atomic_write

        atomic_write(args.output_json, json.dumps({"machine": machine, "size": args.size,
                                                         "threads": args.threads, "clock": args.clock,
                                                         "cells": [c.row() for c in cells]}, indent=1))
    return 0
