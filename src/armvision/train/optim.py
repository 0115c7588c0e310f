"""AdamW with no-decay groups (biases, norms, D, embeddings; A_log is decayed, as in the reference) and optional
layer-wise lr decay."""
from __future__ import annotations

import re
from typing import Callable, Iterable, Optional

import torch
from torch import nn


def classifier_layer_id(name: str, depth: int) -> int:
    """Layer of a classifier parameter for layer-wise decay: embeddings 0, `layers.i` i+1, norm_f/head depth+1."""
    if name.startswith(("patch_embed", "pos_embed", "cls_token")):
        return 0
    m = re.match(r"layers\.(\d+)\.", name)
    if m:
        return int(m.group(1)) + 1
    return depth + 1


def param_groups(
    model: nn.Module,
    weight_decay: float,
    no_weight_decay: Iterable[str] = (),
    layer_decay: Optional[float] = None,
    depth: Optional[int] = None,
    layer_id: Callable[[str, int], int] = classifier_layer_id,
) -> list[dict]:
    """Parameter groups with `weight_decay` and `lr_scale`.

    The reference recipe's rule (MAE / timm `param_groups_weight_decay`, which ARM's training scripts call with
    the model's `no_weight_decay()` names): no decay on tensors with ndim <= 1 (biases, norm weights, Mamba's `D`),
    on names ending in `.bias`, and on the names in `no_weight_decay` / `model.no_weight_decay()` (position
    embeddings, cls / ar tokens). Everything else is decayed, including Mamba's `A_log` (and `A_b_log`, ...), which
    is 2-D (d_inner x d_state): the reference decays it too, since that rule ignores mamba_ssm's
    `_no_weight_decay` attribute. With `layer_decay`, a parameter of layer l (0..depth+1) gets
    lr_scale = layer_decay ** (depth + 1 - l).
    """
    skip = set(no_weight_decay)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    use_ld = layer_decay is not None and layer_decay != 1.0
    if use_ld and depth is None:
        depth = int(getattr(model, "depth"))
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim <= 1 or name.endswith(".bias") or name in skip)
        lid = layer_id(name, depth) if use_ld else 0
        scale = layer_decay ** (depth + 1 - lid) if use_ld else 1.0
        key = (decay, lid)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_scale": scale}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def build_optimizer(groups: list[dict], lr: float, betas: Iterable[float]) -> torch.optim.AdamW:
    """AdamW over `groups` (the `names` entries are kept for inspection)."""
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))


def effective_lr(blr: float, lr: Optional[float], batch_size: int, accum_iter: int, world_size: int) -> float:
    """lr = blr * effective batch / 256 unless an absolute lr is given."""
    if lr is not None:
        return float(lr)
    return blr * batch_size * accum_iter * world_size / 256.0
