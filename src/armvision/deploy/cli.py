"""`armvision export`: a checkpoint -> a torch.export program (.pt2) or ONNX file, checked against eager."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger("armvision.deploy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..argcheck import POS_FLOAT, POS_INT
    from .export import FORMATS

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
    parser.add_argument("--batch", type=POS_INT, default=2, help="batch of the traced example, >= 2 (default 2; the "
                        "exported batch is dynamic)")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights (key model_ema / ema)")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with eager")
    parser.add_argument("--tolerance", type=POS_FLOAT, default=1e-4,
                        help="largest |exported - eager| accepted by the check (default 1e-4); above it: exit 1")
    parser.add_argument("--opset", type=POS_INT, default=None, help="ONNX opset (default: the exporter's)")


def run(args: argparse.Namespace) -> int:
    from ..argcheck import check_output_file
    from ..errors import ConfigError
    from ..models import ARMClassifier, load_model
    from .export import export, resolve_format

    fmt = resolve_format(args.output, args.format)  # before reading a checkpoint of gigabytes
    check_output_file(args.output, "output")
    if args.batch < 2:
        raise ConfigError(f"--batch {args.batch}: the traced batch must be >= 2 (1 would be traced as a constant)")
    model, _ = load_model(args.checkpoint, key="model_ema" if args.ema else "model")
    if not isinstance(model, ARMClassifier) and not args.features:
        raise ConfigError(f"{args.checkpoint} holds a pretrainer ({type(model).__name__}), not a classifier: pass "
                          f"--features to export its encoder features, or finetune it first (armvision finetune)")
    res = export(model, args.output, fmt, features=args.features, img_size=args.img_size,
                 dynamic_size=args.dynamic_size, batch=args.batch, check=not args.no_check, opset=args.opset)
    print(res)
    if res.max_diff is not None and not res.max_diff <= args.tolerance:
        log.error("the exported model differs from eager by %.3g > --tolerance %.3g", res.max_diff, args.tolerance)
        return 1
    return 0
