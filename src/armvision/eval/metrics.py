"""Classification metrics: top-k accuracy and one streaming meter, all-reducible across processes.

`ClassificationMeter` is the one place top-1 / top-k, the mean cross-entropy and the image count are computed: by
`eval.evaluate`, by the finetuning loop's evaluation (train.finetune) and by the probes (`topk_correct`). It keeps
its sums in one float64 tensor on the logits' device (no host sync per batch); `all_reduce` sums that tensor over
the processes of a distributed evaluation, so every process gets the metrics of the whole set.

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
    (k > num_classes is clipped; PAD labels never count)."""
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices  # (B, maxk)
    hit = pred.eq(target[:, None])  # (B, maxk)
    return torch.stack([hit[:, : min(k, maxk)].any(dim=1).sum() for k in ks])


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
