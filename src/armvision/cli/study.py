"""`armvision study`: the small-scale study of ARM's claims (armvision.experiments.study)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="ImageFolder root with train/ and val/ (default: embedded digits)")
    parser.add_argument("--output", default="study", help="study folder: cells/, results.json, REPORT.md, plots")
    parser.add_argument("--quick", action="store_true", help="a smoke test of every kind of cell (< 5 minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds of the main comparison")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="optimizer steps of each pretraining cell "
                        "(default: the plan's)")
    parser.add_argument("--finetune-steps", type=int, default=None, help="optimizer steps of each finetuning cell "
                        "(default: the plan's)")
    parser.add_argument("--report-only", action="store_true", help="rewrite REPORT.md from the finished cells")


def run(args: argparse.Namespace) -> int:
    from ..experiments.study import finished_results, make_plan, run_study, write_report

    plan = make_plan(args.quick, args.data, args.seeds, args.pretrain_steps, args.finetune_steps)
    root = Path(args.output)
    given = [a for a in sys.argv[2:] if a != "--report-only"] if sys.argv[1:2] == ["study"] else []
    command = " ".join(["armvision study", *map(shlex.quote, given)])  # the report's "how to reproduce"
    if args.report_only:
        print(f"wrote {write_report(plan, finished_results(root), root, command)}")
        return 0
    run_study(plan, root, command)
    print(f"study done: {root / 'REPORT.md'}")
    return 0
