"""Classification metrics: top-k accuracy and a streaming, all-reducible accumulator."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the top-k logits, for each k (k > num_classes is clipped)."""
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices  # (B, maxk)
    hit = pred.eq(target[:, None])  # (B, maxk)
    return [int(hit[:, : min(k, maxk)].any(dim=1).sum()) for k in ks]


def accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[float]:
    """Top-k accuracies in percent."""
    n = max(target.numel(), 1)
    return [100.0 * c / n for c in topk_correct(logits, target, ks)]


class ClassificationMeter:
    """Accumulates top-k hits and summed cross-entropy over batches; `all_reduce` sums counts across ranks."""

    def __init__(self, ks: Sequence[int] = (1, 5)) -> None:
        self.ks = tuple(ks)
        self.correct = [0] * len(self.ks)
        self.loss_sum = 0.0
        self.count = 0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: logits (B, K), target (B,) in 0..K-1."""
        logits = logits.float()
        for i, c in enumerate(topk_correct(logits, target, self.ks)):
            self.correct[i] += c
        self.loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        self.count += target.numel()

    def all_reduce(self, device: torch.device | str = "cpu") -> None:
        """Sum the counts over all processes of an initialised process group (no-op otherwise)."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        t = torch.tensor([*self.correct, self.loss_sum, self.count], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        self.correct = [int(round(v)) for v in t[: len(self.ks)].tolist()]
        self.loss_sum, self.count = float(t[-2]), int(round(float(t[-1])))

    def compute(self) -> dict[str, float]:
        """{"top1": %, "top5": %, "loss": mean cross-entropy, "num_images": n}."""
        n = max(self.count, 1)
        out = {f"top{k}": 100.0 * c / n for k, c in zip(self.ks, self.correct)}
        out["loss"] = self.loss_sum / n
        out["num_images"] = self.count
        return out
