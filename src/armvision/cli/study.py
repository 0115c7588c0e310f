"""`armvision study`: the small-scale study of ARM's claims (armvision.experiments.study)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import hidden_alias

if TYPE_CHECKING:
    from ..experiments.study import StudyPlan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="ImageFolder root with train/ and val/ (val/ is the held-out "
                        "test split) or embedded:mnist5k (default: the preset's; study_tiny: embedded:mnist5k)")
    parser.add_argument("--output", default="study", help="study folder: cells/, data/, results.json, REPORT.md, plots")
    parser.add_argument("--preset", default=None, help="a shipped study preset: study_tiny (default, CPU) or "
                        "study_gpu (ImageNet-100-sized data, 192 px, on a GPU)")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="where every cell runs (default: the "
                        "preset's); on cuda the compute measured is GPU wall-clock")
    parser.add_argument("--num-workers", type=int, default=None, help="data-loading processes per cell (default: the "
                        "preset's: 0 on a CPU)")
    hidden_alias(parser, "--workers", "num_workers", type=int)
    parser.add_argument("--quick", action="store_true", help="a smoke test of every kind of cell (a few minutes); "
                        "one seed, so no verdicts")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds of every comparison (default: the "
                        "plan's 5; fewer than 5 draws no verdicts)")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="optimizer steps of each pretraining cell "
                        "(default: the plan's, chosen by --curves)")
    parser.add_argument("--finetune-steps", type=int, default=None, help="optimizer steps of each finetuning cell "
                        "(default: the plan's, chosen by --curves)")
    parser.add_argument("--low-label-finetune-steps", type=int, default=None, help="optimizer steps of finetuning "
                        "with a fraction of the labels (default: the plan's)")
    parser.add_argument("--methods", nargs="+", default=None, help="pretraining methods compared (default: arm mae "
                        "contrastive)")
    parser.add_argument("--label-fractions", type=float, nargs="+", default=None, help="label fractions of the main "
                        "comparison (default: 1 0.1); the smallest is the primary one")
    parser.add_argument("--ablations", nargs="+", default=None, help="keep only these ARM ablation axes: cluster, "
                        "order, decoder, features, block, or none (default: all)")
    parser.add_argument("--arm-lengths", type=float, nargs="+", default=None, help="ARM pretraining lengths of the "
                        "efficiency comparison, x the pretraining steps (default: 1)")
    parser.add_argument("--mae-lengths", type=float, nargs="+", default=None, help="MAE pretraining lengths of the "
                        "efficiency comparison (default: 1 1.7); give the one whose compute equals ARM's "
                        "(--estimate measures the ratio)")
    parser.add_argument("--main-only", action="store_true", help="only the main comparison and its probes (no "
                        "ablations, no efficiency lengths): the headline claims at longer budgets")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one torch thread each); 2 on a 2-core "
                        "machine halves the wall-clock")
    parser.add_argument("--report-only", action="store_true", help="rewrite REPORT.md and the plots from "
                        "OUTPUT/results.json")
    parser.add_argument("--curves", action="store_true", help="measure the budget curves instead (finetuning from "
                        "scratch and pretraining at doubling lengths, judged on the selection split) into "
                        "OUTPUT/curves, and print the chosen budgets")
    parser.add_argument("--estimate", action="store_true", help="time a few steps of each kind of cell and print the "
                        "plan's CPU hours (GPU hours with --device cuda); nothing is written")


def _command(args: argparse.Namespace) -> str:
    given = [a for a in sys.argv[2:] if a != "--report-only"] if sys.argv[1:2] == ["study"] else []
    return " ".join(["armvision study", *map(shlex.quote, given)])  # the report's "how to reproduce"


def plan_of(args: argparse.Namespace) -> StudyPlan:
    """The study plan the command line asks for (the report's recorded command rebuilds the same plan)."""
    from ..experiments import study

    return study.make_plan(args.quick, args.main_only, args.preset, args.ablations, data=args.data,
                           device=args.device, num_workers=args.num_workers, seeds=args.seeds,
                           pretrain_steps=args.pretrain_steps, finetune_steps=args.finetune_steps,
                           low_label_finetune_steps=args.low_label_finetune_steps, methods=args.methods,
                           label_fractions=args.label_fractions, arm_lengths=args.arm_lengths,
                           mae_lengths=args.mae_lengths)


def _check_device(plan: StudyPlan) -> None:
    import torch

    from ..errors import ConfigError

    if plan.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine (torch "
                          f"{torch.__version__}); run on a GPU machine or use --device cpu")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..experiments import study

    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: give at least 1 worker process")
    if args.num_workers is not None and args.num_workers < 0:
        raise ConfigError(f"--num-workers {args.num_workers}: give 0 or more")
    plan = plan_of(args)
    root = Path(args.output)
    if not args.report_only:
        _check_device(plan)
    if args.estimate:
        times = study.measure_step_times(plan)
        print(study.format_estimate(plan, study.estimate(plan, times, args.jobs), args.jobs, times))
        return 0
    if args.curves:
        doc = study.run_curves(plan, study.CurvePlan.quick() if args.quick else study.CurvePlan(), root, args.jobs)
        print((root / "curves" / "CURVES.md").read_text())
        return 0 if doc["choice"] else 1
    if args.report_only:
        doc = study.load_results(root)
        if doc is None:
            raise ConfigError(f"{root / 'results.json'}: no results to report; run `armvision study` first")
        print(f"wrote {study.write_report(doc, root)}")
        return 0
    study.run_study(plan, root, _command(args), jobs=args.jobs)
    print(f"study done: {root / 'REPORT.md'}")
    return 0
