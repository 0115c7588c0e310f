"""Classification metrics: top-k accuracy and one streaming meter, all-reducible across processes.

`ClassificationMeter` is the one place top-1 / top-k (timm.utils.accuracy), the mean cross-entropy and the image
count are computed: by
`eval.evaluate`, by the finetuning loop's evaluation (train.finetune) and by the probes (`topk_correct`). It keeps
its sums in one float64 tensor on the logits' device (no host sync per batch); `all_reduce` sums that tensor over
the processes of a distributed evaluation, so every process gets the metrics of the whole set.

`ConfusionMatrix` counts (true class, predicted class) pairs, for per-class accuracy.

This module imports nothing from armvision, so train/ and eval/ can both use it without a cycle.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

PAD = -1  # a label that marks padding (e.g. the repeated samples that even out the shards): not counted


def topk_hits(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> torch.Tensor:
    """(len(ks),) int64 tensor on the logits' device: samples whose label is among the top-k logits, for each k
    (k > num_classes is clipped; PAD labels never count). timm.utils.accuracy does the counting: a PAD label (-1)
    matches no class, so it is a miss there, and hits = accuracy x batch / 100 (rounded: no host sync)."""
    from timm.utils import accuracy as timm_accuracy

    if target.numel() == 0:
        return torch.zeros(len(ks), dtype=torch.long, device=logits.device)
    percent = torch.stack([torch.as_tensor(a, device=logits.device) for a in timm_accuracy(logits, target, ks)])
    return torch.round(percent.double() * target.numel() / 100.0).long()


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the top-k logits, for each k (k > num_classes is clipped)."""
    return [int(c) for c in topk_hits(logits, target, ks).tolist()]


def accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[float]:
    """Top-k accuracies in percent."""
    n = max(target.numel(), 1)
    return [100.0 * c / n for c in topk_correct(logits, target, ks)]


class ClassificationMeter:
    """Accumulates top-k hits, summed cross-entropy and the count over batches; `all_reduce` sums across ranks.

    Labels equal to PAD (-1) are padding: they count neither as images nor in the loss."""

    def __init__(self, ks: Sequence[int] = (1, 5), device: torch.device | str | None = None) -> None:
        self.ks = tuple(ks)
        # [hits for each k..., loss sum, count]
        self.sums = torch.zeros(len(self.ks) + 2, dtype=torch.float64, device=device or "cpu")

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: logits (B, K), target (B,) in 0..K-1 or PAD."""
        logits = logits.float()
        target = target.to(logits.device)
        if self.sums.device != logits.device:
            self.sums = self.sums.to(logits.device)
        loss = F.cross_entropy(logits, target, reduction="sum", ignore_index=PAD)
        batch = torch.cat([topk_hits(logits, target, self.ks).double(), loss.double()[None],
                           (target != PAD).sum().double()[None]])
        self.sums += batch

    def all_reduce(self, device: torch.device | str | None = None) -> None:
        """Sum the counts over all processes of an initialised process group (no-op otherwise); `device`: where
        the reduction runs (the backend's device, e.g. cuda for NCCL), default where the sums are."""
        if device is not None:
            self.sums = self.sums.to(device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.sums)

    def compute(self) -> dict[str, float]:
        """{"top1": %, "top5": %, "loss": mean cross-entropy, "num_images": n} (one host sync)."""
        *hits, loss_sum, count = self.sums.tolist()
        n = max(count, 1.0)
        out = {f"top{k}": 100.0 * c / n for k, c in zip(self.ks, hits)}
        out["loss"] = loss_sum / n
        out["num_images"] = int(round(count))
        return out


class ConfusionMatrix:
    """counts[t, p]: images of class t predicted as p (top-1), summed over batches and (with `all_reduce`) over
    processes; PAD labels are not counted."""

    def __init__(self, num_classes: int, device: torch.device | str | None = None) -> None:
        self.num_classes = int(num_classes)
        self.counts = torch.zeros(self.num_classes ** 2, dtype=torch.long, device=device or "cpu")

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: logits (B, K), target (B,) in 0..K-1 or PAD."""
        target = target.to(logits.device)
        if self.counts.device != logits.device:
            self.counts = self.counts.to(logits.device)
        pred = logits.argmax(dim=1)  # (B,)
        keep = (target != PAD).long()
        pair = target.clamp_min(0) * self.num_classes + pred  # (B,) flat (true, predicted) index
        self.counts += torch.bincount(pair, weights=keep, minlength=self.num_classes ** 2).long()

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.counts)

    def matrix(self) -> list[list[int]]:
        """Rows: true class, columns: predicted class."""
        return self.counts.view(self.num_classes, self.num_classes).tolist()

    def per_class(self) -> list[dict[str, float]]:
        """For each true class: images, correct (top-1) and accuracy in percent (NaN for a class with no image)."""
        m = self.counts.view(self.num_classes, self.num_classes).cpu()
        images, correct = m.sum(dim=1).tolist(), m.diagonal().tolist()
        return [{"images": n, "correct": c, "accuracy": 100.0 * c / n if n else float("nan")}
                for n, c in zip(images, correct)]
