"""`armvision export`: a checkpoint -> a torch.export program (.pt2) or ONNX file, checked against eager
(armvision.deploy.export_checkpoint)."""
from __future__ import annotations

import argparse
import logging

from ..argcheck import check_output_file, number
from .argtypes import POS_FLOAT, POS_INT, argtype
from .common import hidden_alias

log = logging.getLogger("armvision.deploy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..deploy.export import FORMATS, MIN_OPSET

    parser.add_argument("checkpoint", help="classifier checkpoint (any file or folder `armvision.load_model` reads); "
                        "a pretraining checkpoint with --features")
    parser.add_argument("output", help="file to write: *.pt2 (torch.export) or *.onnx")
    parser.add_argument("--format", choices=FORMATS, default=None, help="default: from the output's suffix")
    parser.add_argument("--features", action="store_true",
                        help="export forward_features (tokens) instead of logits; required for a pretrainer")
    parser.add_argument("--dynamic-size", action="store_true",
                        help="image height and width dynamic too (classifiers; multiples of the patch size)")
    parser.add_argument("--img-size", type=POS_INT, default=None,
                        help="size of the traced example (default: the model's)")
    parser.add_argument("--batch-size", type=POS_INT, default=2, help="batch of the traced example, >= 2 (default 2; "
                        "the exported batch is dynamic)")
    hidden_alias(parser, "--batch", "batch_size", type=POS_INT)
    parser.add_argument("--ema", action="store_true", help="export the EMA weights (key model_ema / ema)")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with eager")
    parser.add_argument("--tolerance", type=POS_FLOAT, default=1e-4,
                        help="largest |exported - eager| accepted by the check (default 1e-4); above it: exit 1")
    parser.add_argument("--opset", type=argtype(int, number(MIN_OPSET)), default=None,
                        help=f"ONNX opset, >= {MIN_OPSET} (default: the exporter's)")


def run(args: argparse.Namespace) -> int:
    from ..deploy.export import export_checkpoint, resolve_format

    resolve_format(args.output, args.format)  # a bad format fails before the output check and the checkpoint read
    check_output_file(args.output, "output")
    res = export_checkpoint(args.checkpoint, args.output, args.format, features=args.features,
                            img_size=args.img_size, dynamic_size=args.dynamic_size, batch=args.batch_size,
                            ema=args.ema, check=not args.no_check, opset=args.opset)
    print(res)
    if res.max_diff is not None and not res.max_diff <= args.tolerance:
        log.error("the exported model differs from eager by %.3g > --tolerance %.3g", res.max_diff, args.tolerance)
        return 1
    return 0
