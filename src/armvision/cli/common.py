"""Options several commands share, spelled and explained once: --device, --num-workers, --precision, --progress,
--output-json; and hidden aliases, so that an option renamed to the common spelling keeps working under its old one
(not shown in --help)."""
from __future__ import annotations

import argparse
from typing import Any

from .argtypes import DEVICE, NONNEG_INT

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def hidden_alias(parser: argparse.ArgumentParser, flag: str, dest: str, **kwargs: Any) -> None:
    """`flag` as an old spelling of the option stored in `dest`: it works, --help does not list it."""
    parser.add_argument(flag, dest=dest, help=argparse.SUPPRESS, **kwargs)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=DEVICE, default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda or cuda:N (default: auto)")


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when CUDA is available, else 'cpu'; other names as they are."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_num_workers(parser: argparse.ArgumentParser) -> None:
    from ..data.loading import default_num_workers

    parser.add_argument("--num-workers", type=NONNEG_INT, default=None,
                        help="data-loading worker processes (default: the CPUs this process may use, minus one, at "
                        f"most 8: {default_num_workers()} here)")


def add_precision(parser: argparse.ArgumentParser) -> None:
    """--precision (the training commands' spelling); the old --amp means bf16."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 on CUDA with bf16, fp16 on older CUDA, fp32 on CPU (default: auto)")
    hidden_alias(parser, "--amp", "precision", action="store_const", const="bf16")


def add_progress(parser: argparse.ArgumentParser) -> None:
    """--progress / --no-progress, as the training commands have them (bars on a terminal, plain lines elsewhere)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show progress: a bar on a terminal, a plain line now and then elsewhere (default: on)")


def add_output_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-json", default=None, metavar="FILE",
                        help="append the result record to this JSON list")
