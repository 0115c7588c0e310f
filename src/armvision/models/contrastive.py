"""Contrastive (SimCLR-style) pretraining of the same Mamba backbone: the paper's contrastive baseline.

Two augmented views of each image (`data.TwoViews`) -> the one-direction Mamba encoder of the ARM pretrainer over
all patches (raster order, fixed sin-cos positions) -> mean over tokens -> MLP `projector` -> `nt_xent` (SimCLR's
normalised-temperature cross-entropy: each view must pick its partner among the other 2B - 1 views of the batch).
Its checkpoints finetune exactly like ARM's (same backbone parameter names; the projection head is dropped).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import sincos_2d
from .backbone import MambaBackbone
from .budget import layers_bytes
from .config import ContrastiveConfig

Views = Union[Tensor, Sequence[Tensor]]


@dataclass
class ContrastiveOutput:
    loss: Tensor  # scalar NT-Xent over the 2B views
    z1: Tensor  # (B, proj_dim) projections of the first views (not normalised)
    z2: Tensor  # (B, proj_dim) projections of the second views

    def __getitem__(self, key: str):
        return getattr(self, key)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's NT-Xent: z1[i] and z2[i] (B, D) are the two views of image i. Each of the 2B views is classified
    among the other 2B - 1 by cosine similarity / temperature; the loss is the mean cross-entropy of its partner."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2B, D), unit vectors
    n = z.shape[0]
    sim = (z @ z.t()) / temperature  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))  # a view is not its pair
    partner = (torch.arange(n, device=z.device) + n // 2) % n  # view i of image k <-> the other view of image k
    return F.cross_entropy(sim, partner)


def projection_head(dim: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    """LayerNorm (the encoder has no final norm) then `layers` Linear layers, the hidden ones followed by
    BatchNorm + ReLU (SimCLR's projector)."""
    mods: list[nn.Module] = [nn.LayerNorm(dim)]
    width = dim
    for _ in range(layers - 1):
        mods += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        width = hidden
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


def split_views(views: Views) -> Tensor:
    """(B, 2, C, H, W) or a pair of (B, C, H, W) -> (2B, C, H, W): all first views, then all second views."""
    if isinstance(views, (list, tuple)):
        if len(views) != 2:
            raise ConfigError(f"contrastive pretraining takes two views per image, got {len(views)}")
        views = torch.stack(list(views), dim=1)
    if views.ndim != 5 or views.shape[1] != 2:
        raise ConfigError(f"contrastive pretraining takes two views per image, (B, 2, C, H, W), got "
                          f"{tuple(views.shape)}; use data.TwoViews as the dataset transform")
    return views.transpose(0, 1).flatten(0, 1)


class ContrastivePretrainer(MambaBackbone):
    """One-direction Mamba encoder (raster order), mean-pooled, + MLP projector trained with NT-Xent."""

    fixed_tables = ("pos_embed",)
    pretraining_heads = {"projector": "projection head"}  # dropped when finetuning (named in the load report)

    def __init__(self, cfg: ContrastiveConfig):
        super().__init__(cfg, [cfg.drop_path_rate] * cfg.depth if cfg.drop_path_rate else None)
        h, w = self.grid_size
        self.num_classes = 0
        self.temperature = cfg.temperature
        self.pos_embed = nn.Parameter(sincos_2d(cfg.embed_dim, (h, w)).unsqueeze(0), requires_grad=False)  # (1, N, D)
        hidden = cfg.proj_hidden_dim or cfg.embed_dim
        self.projector = projection_head(cfg.embed_dim, hidden, cfg.proj_dim, cfg.proj_layers)
        self.init_weights()

    @classmethod
    def extra_bytes(cls, cfg: ContrastiveConfig, n: int) -> int:
        """The projection head."""
        hidden = cfg.proj_hidden_dim or cfg.embed_dim
        return layers_bytes(1, lambda: projection_head(cfg.embed_dim, hidden, cfg.proj_dim, cfg.proj_layers))

    @torch.no_grad()
    def init_weights(self) -> None:
        self.init_backbone_weights()
        for m in self.projector.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---- the method's steps -------------------------------------------------------------------------------------
    def _embed(self, imgs: Tensor) -> Tensor:
        self.check_images(imgs)
        return self.patch_embed(imgs) + self.pos_embed  # (B, N, D), raster order

    def encoder_outputs(self, imgs: Tensor, layers=None):
        """Encoder outputs (B, N, D) of the 1-based `layers` (default: last), raster order."""
        return self.layer_outputs(self._embed(imgs), layers)

    def forward_encoder(self, imgs: Tensor) -> Tensor:
        """(B, C, H, W) -> pooled representation (B, D): the mean of the last layer's tokens."""
        return self.encoder_outputs(imgs)[-1].mean(1)

    def forward_projection(self, imgs: Tensor) -> Tensor:
        """(B, C, H, W) -> projection (B, proj_dim), the vector the loss compares."""
        return self.projector(self.forward_encoder(imgs))

    def forward_loss(self, z1: Tensor, z2: Tensor) -> ContrastiveOutput:
        return ContrastiveOutput(nt_xent(z1, z2, self.temperature), z1, z2)

    def forward(self, views: Views) -> ContrastiveOutput:
        """Two views per image, (B, 2, C, H, W) or a pair of (B, C, H, W); both go through the encoder in one batch."""
        z1, z2 = self.forward_projection(split_views(views)).chunk(2)  # (B, proj_dim) each
        return self.forward_loss(z1, z2)

    # ---- timm interface ----------------------------------------------------------------------------------------
    def forward_features(self, imgs: Tensor) -> Tensor:
        """Last encoder layer, (B, N, D) raster tokens, no norm (timm convention)."""
        return self.encoder_outputs(imgs)[-1]

    def forward_intermediates(self, x: Tensor, indices=None, return_prefix_tokens: bool = False, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """As ARMPretrainer.forward_intermediates: raster maps of the 0-based blocks `indices`."""
        return self._encoder_intermediates(self._embed(x), indices, norm, stop_early, output_fmt, intermediates_only)

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True):
        return self._prune_blocks(indices)

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    @classmethod
    def matches_state_dict(cls, sd: Mapping[str, Tensor]) -> bool:
        return any(k.startswith("projector.") for k in sd)

    @classmethod
    def config_from_state_dict(cls, sd: Mapping[str, Tensor], args: Any = None) -> Dict[str, Any]:
        """Backbone fields, plus the projector's depth and widths (read off its Linear weights)."""
        cfg = super().config_from_state_dict(sd, args)
        linears = sorted((int(k.split(".")[1]), v) for k, v in sd.items()
                         if k.startswith("projector.") and k.endswith(".weight") and v.ndim == 2)
        if linears:
            cfg.update(proj_layers=len(linears), proj_dim=linears[-1][1].shape[0])
            if len(linears) > 1:
                cfg["proj_hidden_dim"] = linears[0][1].shape[0]
        return cfg


def create_contrastive(size: str = "base", **overrides: Any) -> ContrastivePretrainer:
    """SimCLR-style pretrainer on the ARM backbone (see ContrastiveConfig for the knobs)."""
    from .config import make_config

    return ContrastivePretrainer(make_config("contrastive", size, **overrides))
