"""`armvision bench gpu-check` / `python -m armvision.bench.gpu_check`: the one-command GPU check
(armvision.bench.gpu_check)."""
from __future__ import annotations

import argparse
from typing import List, Optional

from ..common import hidden_alias


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", dest="out", metavar="DIR", help="folder for report.json and report.md (required)")
    hidden_alias(p, "--out", "out")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, Triton interpreted (seconds)")
    p.add_argument("--model-backend", default="triton",
                   help="scan backend of the models in sections 3-4 (their scan_backend); '' = automatic")
    p.add_argument("--sections", default="correctness,scan_speed,models,pretrain",
                   help="comma-separated sections to run (default: all)")
    p.add_argument("--pretrain-batch", type=int, default=64, help="batch of the pretraining section (default 64)")
    p.add_argument("--pretrain-steps", type=int, default=20, help="timed steps of the pretraining section (default 20)")
    p.add_argument("--budget-s", type=float, default=330.0, help="skip the sections left once this is spent")
    p.add_argument("--compare-auto", action="store_true",
                   help="also time the ARM classifier with the automatic scan backend (on a GPU without mamba_ssm: "
                        "the chunked torch path, minutes at batch 64)")


def run(args: argparse.Namespace) -> int:
    from ...bench.gpu_check import GpuCheckOptions, run_gpu_check
    from ...errors import ConfigError

    if args.out is None:  # (not argparse's required=True: the old spelling --out must satisfy it too)
        raise ConfigError("--output DIR is required: the folder for report.json and report.md")
    return run_gpu_check(GpuCheckOptions(args.out, args.dry_run, args.model_backend, args.sections,
                                         args.pretrain_batch, args.pretrain_steps, args.budget_s, args.compare_auto))


def main(argv: Optional[List[str]] = None) -> int:
    """The `python -m armvision.bench.gpu_check` entry."""
    from ...bench import gpu_check

    p = argparse.ArgumentParser(prog="python -m armvision.bench.gpu_check", description=gpu_check.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    if args.out is None:
        p.error("the following arguments are required: --output")
    return run(args)
