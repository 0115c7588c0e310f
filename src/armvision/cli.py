"""The `armvision` command line: one sub-command per module.

Each command module defines `add_arguments(parser)` and `run(args) -> int`; modules are imported only when
their command runs, so `armvision --help` stays fast and a missing optional dependency breaks one command only.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

# name -> (module, one-line help)
COMMANDS = {
    "pretrain": ("armvision.train.pretrain", "pretrain a backbone (ARM, or --method mae)"),
    "finetune": ("armvision.train.finetune", "finetune a classifier from a pretraining checkpoint"),
    "eval": ("armvision.eval.evaluate", "top-1/top-5 of a classifier checkpoint on an ImageFolder or robustness set"),
    "probe": ("armvision.eval.probe", "k-NN and linear-probe evaluation of frozen pretrained features"),
    "visualize": ("armvision.eval.visualize", "draw cluster order, targets and predictions of a pretrained model"),
    "plot": ("armvision.eval.plots", "loss / lr / accuracy curves from the log.jsonl of one or more runs"),
    "bench": ("armvision.bench.cli", "benchmarks: scan, model, train-step"),
    "convert": ("armvision.models.convert", "convert a reference .pth checkpoint to armvision's safetensors format"),
    "study": ("armvision.study", "small-scale study of ARM's claims (supervised vs ARM vs MAE, ablations)"),
    "demo": ("armvision.train.demo", "pretrain then finetune a tiny model on the embedded data (make run)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="armvision", description=__doc__.splitlines()[0])
    from . import __version__

    parser.add_argument("--version", action="version", version=f"armvision {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
            parser.error(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
        parser.parse_args(argv)
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"armvision {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(rest)
    from .errors import ArmVisionError

    try:
        return int(module.run(args) or 0)
    except ArmVisionError as e:  # user mistakes: one clear line, no traceback wall
        print(f"armvision {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
