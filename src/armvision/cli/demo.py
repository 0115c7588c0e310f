"""`armvision demo` (`make run`): pretrain a tiny ARM on the embedded digits, finetune it, plot the curves.

The runs are the presets configs/demo_pretrain.yaml and configs/demo_finetune.yaml; these flags change a few knobs.
"""
from __future__ import annotations

import argparse

from .argtypes import POS_INT
from .common import add_device, add_num_workers, add_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="runs/demo", help="output folder (default: runs/demo); a previous demo "
                        "there is moved aside to OUTPUT/pretrain.old-DATE-TIME etc., never deleted")
    parser.add_argument("--pretrain-epochs", type=POS_INT, default=None,
                        help="pretraining epochs (default: the demo_pretrain preset's, 12)")
    parser.add_argument("--finetune-epochs", type=POS_INT, default=None,
                        help="finetuning epochs (default: the demo_finetune preset's, 4)")
    parser.add_argument("--max-steps", type=POS_INT, default=None, help="cap each run at N steps (smoke tests)")
    add_device(parser)
    add_num_workers(parser)
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from ..argcheck import check_output_dir
    from ..train.demo import demo_configs, run_demo

    out = check_output_dir(args.output, "--output")
    both = {"device": args.device, "num_workers": args.num_workers, "max_steps": args.max_steps,
            "progress": args.progress}
    epochs = {"pretrain": args.pretrain_epochs, "finetune": args.finetune_epochs}
    overrides = {step: {**both, **({"epochs": n} if n else {})} for step, n in epochs.items()}
    pt, ft = demo_configs(out, overrides)
    run_demo(pt, ft, out, say=lambda text: print(text, flush=True))
    return 0
