"""Frozen-feature extraction for k-NN and linear probes."""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import track


def _pool(out, pool: str, norm: bool = True) -> torch.Tensor:
    """Model output (tensor or list of tensors, last one used) -> (B, D) feature.

    Token outputs (B, L, D) of inner blocks are raw residual streams: with `norm` each token is first layer-normed
    without affine parameters (as a model's own final norm would), then pooled.
    """
    if isinstance(out, (list, tuple)):
        out = out[-1]
    if out.dim() == 2:  # already pooled (B, D)
        return out
    if out.dim() != 3:
        raise ValueError(f"expected (B, D) or (B, L, D) features, got shape {tuple(out.shape)}")
    if norm:
        out = F.layer_norm(out.float(), out.shape[-1:])
    if pool == "mean":
        return out.mean(dim=1)  # (B, L, D) -> (B, D)
    if pool == "max":
        return out.amax(dim=1)
    raise ValueError(f"unknown pool {pool!r}; use 'mean' or 'max'")


def model_kind(model: nn.Module) -> str:
    """'classifier' or 'pretrainer' (also 'mae'), read from model.config.kind, else guessed from the methods."""
    kind = getattr(getattr(model, "config", None), "kind", None)
    if kind:
        return str(kind)
    return "classifier" if hasattr(model, "forward_head") else "pretrainer"


def forward_pooled(model: nn.Module, imgs: torch.Tensor, layer: Optional[int] = None,
                   pool: str = "mean", norm: bool = True) -> torch.Tensor:
    """(B, C, H, W) -> (B, D) frozen feature.

    A pretrainer gives the tokens of encoder layer `layer` (1-based; None = last layer), mean-pooled. A classifier
    gives its pooled feature (cls token or global pool) when `layer` is None, else the tokens of block `layer`.
    """
    if layer is not None and not 1 <= layer <= len(model.layers):
        raise ValueError(f"layer {layer} out of range 1..{len(model.layers)}")
    if model_kind(model) != "classifier":
        if layer is None:
            return _pool(model.forward_features(imgs), pool, norm)  # (B, N, D) tokens of the last layer
        tokens = model.forward_intermediates(imgs, indices=[layer - 1], output_fmt="NLC", intermediates_only=True)
        return _pool(tokens, pool, norm)
    if layer is None:
        return model.forward_head(model.forward_features(imgs), pre_logits=True)  # cls token or global pool
    blocks = model.layers
    captured: list[torch.Tensor] = []
    hook = blocks[layer - 1].register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        model.forward_features(imgs)
    finally:
        hook.remove()
    return _pool(captured[0], pool, norm)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable,
    layer: Optional[int] = None,
    pool: str = "mean",
    norm: bool = True,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a frozen model over `loader` ((imgs, labels) batches) -> (feats (N, D) float32 on CPU, labels (N,))."""
    model.eval()
    feats, labels = [], []
    for imgs, target in track(loader, desc, enabled=progress):
        f = forward_pooled(model, imgs.to(device, non_blocking=True), layer, pool, norm)
        feats.append(f.float().cpu())
        labels.append(torch.as_tensor(target).cpu())
    if not feats:
        raise ValueError("no images to extract features from")
    return torch.cat(feats), torch.cat(labels).long()
