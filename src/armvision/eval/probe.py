"""`armvision probe`: frozen-feature evaluation of a pretrained backbone (k-NN and linear probe).

k-NN follows DINO's protocol: cosine similarity of L2-normalised features, the k=20 nearest training samples vote
for their class with weight exp(sim / 0.07). The linear probe follows MAE's linprobe protocol but without the
BatchNorm before the head: the features are standardised once with the training-set mean/std, then a Linear head is
trained on the precomputed features (SGD momentum 0.9, cosine schedule). Features of both splits are computed once
with the evaluation transform (resize + center crop, no augmentation): the mean over tokens of an encoder layer's
output, each token layer-normed without affine parameters, or a classifier's pooled feature.
"""
from __future__ import annotations

import argparse
import datetime
import math
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from .metrics import topk_correct


@torch.no_grad()
def knn_classify(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: Optional[int] = None,
    chunk: int = 1024,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Weighted k-NN votes (N_test, num_classes): sum over the k nearest train samples of exp(cos / T)."""
    num_classes = int(num_classes or int(train_labels.max()) + 1)
    k = min(k, train_feats.shape[0])
    train = F.normalize(train_feats.float().to(device or train_feats.device), dim=1)  # (N, D)
    votes = []
    for start in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[start:start + chunk].float().to(train.device), dim=1)  # (b, D)
        sim, idx = (q @ train.T).topk(k, dim=1)  # (b, k)
        weight = (sim / temperature).exp()
        v = torch.zeros(q.shape[0], num_classes, device=train.device)
        v.scatter_add_(1, train_labels.to(train.device)[idx], weight)  # (b, C)
        votes.append(v)
    return torch.cat(votes)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 20, temperature: float = 0.07,
                 num_classes: Optional[int] = None, device: torch.device | str | None = None) -> dict[str, float]:
    """DINO k-NN top-1/top-5 in percent."""
    votes = knn_classify(train_feats, train_labels, test_feats, k, temperature, num_classes, device=device)
    c1, c5 = topk_correct(votes, test_labels.to(votes.device), (1, 5))
    n = max(test_labels.numel(), 1)
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n}


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: Optional[int] = None,
    epochs: int = 100,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Train a Linear head on standardised frozen features; top-1/top-5 (percent) on the test features."""
    num_classes = int(num_classes or int(max(train_labels.max(), test_labels.max())) + 1)
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(device or train_feats.device)
    train_feats, test_feats = train_feats.float().to(device), test_feats.float().to(device)
    train_labels, test_labels = train_labels.to(device), test_labels.to(device)
    mean = train_feats.mean(0, keepdim=True)
    std = train_feats.std(0, correction=0, keepdim=True).clamp_min(1e-6)
    xtr, xte = (train_feats - mean) / std, (test_feats - mean) / std  # (N, D), standardised once
    head = nn.Linear(xtr.shape[1], num_classes).to(device)
    with torch.no_grad():  # MAE's head init: trunc-normal std 0.01, zero bias
        w = torch.nn.init.trunc_normal_(torch.empty(head.weight.shape), std=0.01, generator=gen)
        head.weight.copy_(w)
        head.bias.zero_()
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(xtr.shape[0] / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    for _ in range(epochs):
        perm = torch.randperm(xtr.shape[0], generator=gen).to(device)
        for start in range(0, xtr.shape[0], batch_size):
            i = perm[start:start + batch_size]
            loss = F.cross_entropy(head(xtr[i]), train_labels[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        logits = head(xte)
        c1, c5 = topk_correct(logits, test_labels, (1, 5))
        train_acc = topk_correct(head(xtr), train_labels, (1,))[0]
    n = max(test_labels.numel(), 1)
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n,
            "train_top1": 100.0 * train_acc / max(train_labels.numel(), 1),
            "loss": float(F.cross_entropy(logits, test_labels))}


def probe_checkpoint(
    checkpoint: str,
    data: Optional[str] = None,
    layer: Optional[int] = None,
    knn_k: int = 20,
    temperature: float = 0.07,
    epochs: int = 100,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    img_size: Optional[int] = None,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: int = 0,
    ema: bool = False,
    knn: bool = True,
    linear: bool = True,
    max_images: Optional[int] = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Frozen features of `checkpoint` on data/train and data/val (or the embedded digits) -> k-NN and probe record."""
    from torch.utils.data import DataLoader, Subset

    from ..data import build_dataset, eval_transform
    from .features import extract_features, model_kind
    from .evaluate import load_model_for_eval

    if not (knn or linear):
        raise ConfigError("nothing to do: both the k-NN and the linear probe are switched off")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    model, info = load_model_for_eval(checkpoint, ema, img_size)
    size = getattr(model.config, "img_size", 224)
    size = size if isinstance(size, int) else int(size[0])
    depth = getattr(model.config, "depth", None)
    if layer is not None and depth is not None and not 1 <= layer <= depth:
        raise ConfigError(f"--layer {layer} is out of range: the encoder has layers 1..{depth}")
    model.to(dev)
    feats, classes = {}, {}
    for split in ("train", "val"):
        ds = build_dataset(data, split, eval_transform(size), img_size=size)
        classes[split] = list(getattr(ds, "classes", []))
        if split == "val" and classes["val"] != classes["train"]:
            raise DataError(f"--data {data}: train/ and val/ have different class folders "
                            f"({len(classes['train'])} vs {len(classes['val'])}); give both the same classes")
        if max_images is not None and max_images < len(ds):  # a fixed random subset, the same for every model
            ds = Subset(ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:max_images].tolist())
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            pin_memory=dev.type == "cuda")
        feats[split] = extract_features(model, loader, layer=layer, device=dev, progress=progress,
                                        desc=f"features {split}")
        if split == "train":
            num_classes = len(classes[split]) or int(feats[split][1].max()) + 1
    (xtr, ytr), (xva, yva) = feats["train"], feats["val"]
    record: dict[str, Any] = {
        "checkpoint": str(checkpoint), "source": info.get("source"), "data": data or "embedded:digits",
        "layer": layer if layer is not None else depth, "img_size": size, "feature_dim": xtr.shape[1],
        "num_train": xtr.shape[0], "num_val": xva.shape[0],
        "feature": "pooled head feature" if layer is None and model_kind(model) == "classifier"
        else "mean of layer-normed tokens",
    }
    if knn:
        t0 = time.perf_counter()
        record["knn"] = dict(knn_accuracy(xtr, ytr, xva, yva, knn_k, temperature, num_classes, device=dev),
                             k=knn_k, temperature=temperature, seconds=round(time.perf_counter() - t0, 2))
    if linear:
        t0 = time.perf_counter()
        record["linear"] = dict(linear_probe(xtr, ytr, xva, yva, num_classes, epochs, lr, weight_decay, device=dev),
                                epochs=epochs, lr=lr, seconds=round(time.perf_counter() - t0, 2))
    from .. import __version__

    record.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  torch=torch.__version__, armvision=__version__)
    return record


def format_probe(record: dict[str, Any]) -> str:
    """A short text table of a probe record."""
    lines = [f"{Path(record['checkpoint']).name}  data={record['data']}  layer={record['layer']}  "
             f"dim={record['feature_dim']}  train={record['num_train']}  val={record['num_val']}",
             f"{'protocol':<22}{'top1':>8}{'top5':>8}"]
    if "knn" in record:
        r = record["knn"]
        lines.append(f"{'k-NN k=%d T=%g' % (r['k'], r['temperature']):<22}{r['top1']:>8.2f}{r['top5']:>8.2f}")
    if "linear" in record:
        r = record["linear"]
        lines.append(f"{'linear %d ep' % r['epochs']:<22}{r['top1']:>8.2f}{r['top5']:>8.2f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..argcheck import DEVICE, NONNEG_FLOAT, NONNEG_INT, POS_FLOAT, POS_INT

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
    parser.add_argument("--device", type=DEVICE, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--num-workers", type=NONNEG_INT, default=4, help="data-loading workers (default: 4)")
    parser.add_argument("--output-json", default=None, help="append the result record to this JSON list")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..argcheck import check_output_file
    from .evaluate import append_json

    if args.output_json:
        check_output_file(args.output_json, "--output-json")
    record = probe_checkpoint(
        args.checkpoint, data=args.data, layer=args.layer, knn_k=args.knn_k, temperature=args.temperature,
        epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, img_size=args.img_size,
        batch_size=args.batch_size, device=args.device, num_workers=args.num_workers, ema=args.ema,
        knn=not args.no_knn, linear=not args.no_linear, max_images=args.max_images, progress=not args.no_progress,
    )
    print(format_probe(record))
    if args.output_json:
        append_json(args.output_json, record)
        print(f"appended to {args.output_json}")
    return 0
