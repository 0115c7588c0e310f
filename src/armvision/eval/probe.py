"""`armvision probe`: frozen-feature evaluation of a pretrained backbone (k-NN and linear probe).

k-NN follows DINO's protocol: cosine similarity of L2-normalised features, the k=20 nearest training samples vote
for their class with weight exp(sim / 0.07). The linear probe follows MAE's linprobe protocol but without the
BatchNorm before the head: the features are standardised once with the training-set mean/std, then a Linear head is
trained on the precomputed features (SGD momentum 0.9, cosine schedule). Features of both splits are computed once
with the evaluation transform (resize + center crop, no augmentation): the mean over tokens of an encoder layer's
output, each token layer-normed without affine parameters, or a classifier's pooled feature.
"""
from __future__ import annotations

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


def _features_of_splits(model: nn.Module, data: Optional[str], size: tuple[int, int], layer: Optional[int],
                        batch_size: int, num_workers: int, dev: torch.device, max_images: Optional[int],
                        progress: bool):
    """{"train": (feats, labels), "val": (feats, labels)} with the evaluation transform, and the class count."""
    from torch.utils.data import DataLoader, IterableDataset, Subset

    from ..data import build_dataset, eval_transform
    from .features import extract_features

    feats, classes = {}, {}
    for split in ("train", "val"):
        ds = build_dataset(data, split, eval_transform(size), img_size=size)
        classes[split] = list(getattr(ds, "classes", []))
        if split == "val" and classes["val"] != classes["train"]:
            raise DataError(f"--data {data}: train/ and val/ have different class folders "
                            f"({len(classes['train'])} vs {len(classes['val'])}); give both the same classes")
        if max_images is not None and isinstance(ds, IterableDataset):
            raise ConfigError(f"--max-images needs an indexed dataset (folders or a saved Hugging Face dataset); "
                              f"--data {data} is a stream of shards")
        if max_images is not None and max_images < len(ds):  # a fixed random subset, the same for every model
            ds = Subset(ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:max_images].tolist())
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            pin_memory=dev.type == "cuda")
        feats[split] = extract_features(model, loader, layer=layer, device=dev, progress=progress,
                                        desc=f"features {split}")
    num_classes = len(classes["train"]) or int(feats["train"][1].max()) + 1
    return feats, num_classes


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
    from .evaluate import load_model_for_eval
    from .features import model_kind

    if not (knn or linear):
        raise ConfigError("nothing to do: both the k-NN and the linear probe are switched off")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    model, info = load_model_for_eval(checkpoint, ema, img_size)
    size = model.config.img_size  # (height, width)
    depth = getattr(model.config, "depth", None)
    if layer is not None and depth is not None and not 1 <= layer <= depth:
        raise ConfigError(f"--layer {layer} is out of range: the encoder has layers 1..{depth}")
    model.to(dev)
    feats, num_classes = _features_of_splits(model, data, size, layer, batch_size, num_workers, dev, max_images,
                                             progress)
    (xtr, ytr), (xva, yva) = feats["train"], feats["val"]
    record: dict[str, Any] = {
        "checkpoint": str(checkpoint), "source": info.get("source"), "data": data or "embedded:digits",
        "layer": layer if layer is not None else depth, "img_size": size[0] if size[0] == size[1] else list(size), "feature_dim": xtr.shape[1],
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
    from ..version import __version__

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
