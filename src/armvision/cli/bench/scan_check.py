"""`armvision bench scan-check`: one selective-scan backend against the sequential reference, values and all
gradients, on the small cases of armvision.bench.scan_check (exit 1 when a check fails)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="triton", help="triton (default), torch, cuda (mamba_ssm) or ref")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtypes", default="float32", help="comma-separated: float32,float16,bfloat16")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--max-block-d", type=int, default=None, help="triton: cap on channels per program")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    from ...bench.scan_check import check_backend

    ok = check_backend(args.backend, args.device, [d for d in args.dtypes.split(",") if d],
                       [n for n in args.cases.split(",") if n], args.max_block_d, as_json=args.json)
    return 0 if ok else 1
