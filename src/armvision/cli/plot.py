"""`armvision plot RUN_DIR...`: loss / lr / accuracy curves of one or several runs (armvision.eval.plots.plot_runs)."""
from __future__ import annotations

import argparse

from ..argcheck import check_output_dir
from .argtypes import POS_INT
from .common import hidden_alias


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories holding log.jsonl "
                        "(or log.jsonl files)")
    parser.add_argument("--output", default=None, metavar="DIR", help="output folder (default: RUN_DIR/plots for "
                        "one run, runs/plots for several)")
    hidden_alias(parser, "--out", "output")
    parser.add_argument("--smooth", type=POS_INT, default=1, metavar="N",
                        help="also draw a trailing moving average over N points of per-step curves, the learning "
                        "rate excepted (default 1: raw only)")


def run(args: argparse.Namespace) -> int:
    from ..eval.plots import default_plot_dir, plot_runs

    out = args.output if args.output is not None else default_plot_dir(args.run_dirs)
    check_output_dir(out, "--output", create=False)
    for p in plot_runs(args.run_dirs, out, smooth_n=args.smooth):
        print(p)
    return 0
