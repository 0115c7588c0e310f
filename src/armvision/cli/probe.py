"""`armvision probe`: k-NN and linear-probe accuracy of frozen features (armvision.eval.probe.probe_checkpoint)."""
from __future__ import annotations

import argparse

from .argtypes import NONNEG_FLOAT, NONNEG_INT, POS_FLOAT, POS_INT
from .common import add_device, add_num_workers, add_output_json, add_progress, resolve_device
from .evaluate import check_output_json, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="pretraining checkpoint (ours, save_pretrained dir, "
                                                            "or reference .pth); a classifier works too")
    parser.add_argument("--data", default=None, help="folder with train/ and val/ ImageFolders; "
                                                     "default: the embedded digits")
    parser.add_argument("--layer", type=POS_INT, default=None, help="1-based encoder layer (default: the last)")
    parser.add_argument("--knn-k", type=POS_INT, default=20, help="neighbours of the k-NN classifier (default: 20)")
    parser.add_argument("--temperature", type=POS_FLOAT, default=0.07,
                        help="k-NN vote temperature (default: 0.07, as DINO)")
    parser.add_argument("--epochs", type=NONNEG_INT, default=100,
                        help="linear-probe epochs on the precomputed features (default: 100)")
    parser.add_argument("--lr", type=POS_FLOAT, default=0.1,
                        help="linear-probe SGD learning rate, cosine to 0 (default: 0.1)")
    parser.add_argument("--weight-decay", type=NONNEG_FLOAT, default=0.0, help="linear-probe weight decay (default: 0)")
    parser.add_argument("--max-images", type=POS_INT, default=None,
                        help="use a fixed random subset of at most this many images per split (quick checks)")
    parser.add_argument("--no-knn", action="store_true", help="skip the k-NN evaluation")
    parser.add_argument("--no-linear", action="store_true", help="skip the linear probe")
    parser.add_argument("--ema", action="store_true", help="use the EMA weights of the checkpoint")
    parser.add_argument("--img-size", type=POS_INT, default=None, help="resolution (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=POS_INT, default=64, help="images per batch (default: 64)")
    add_device(parser)
    add_num_workers(parser)
    add_output_json(parser)
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from ..eval.probe import format_probe, probe_checkpoint

    check_output_json(args.output_json)
    record = probe_checkpoint(
        args.checkpoint, data=args.data, layer=args.layer, knn_k=args.knn_k, temperature=args.temperature,
        epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, img_size=args.img_size,
        batch_size=args.batch_size, device=resolve_device(args.device), num_workers=args.num_workers, ema=args.ema,
        knn=not args.no_knn, linear=not args.no_linear, max_images=args.max_images, progress=args.progress,
    )
    report(format_probe(record), record, args.output_json)
    return 0
