"""ARM classifier: the backbone with 4-direction mixers, a middle cls token, and a linear head."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from ..nn import resample_with_middle_token
from .backbone import MambaBackbone
from .config import ClassifierConfig


class ARMClassifier(MambaBackbone):
    directions = 4

    def __init__(self, cfg: ClassifierConfig):
        dpr = [cfg.drop_path_rate * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]  # linspace(0, rate, depth)
        super().__init__(cfg, [0.0] + dpr[:-1])  # layer i gets linspace(0, rate, depth)[i-1], layer 0 gets 0
        self.num_classes, self.global_pool = cfg.num_classes, cfg.global_pool
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, cfg.embed_dim))
        self.norm_f = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        self.init_backbone_weights()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self._init_head()

    @torch.no_grad()
    def _init_head(self) -> None:
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=self.config.head_init_std)
            nn.init.zeros_(self.head.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = self.config.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_head()

    def _pos_embed_for(self, hw: Tuple[int, int]) -> Tensor:
        if tuple(hw) == tuple(self.grid_size):
            return self.pos_embed
        return resample_with_middle_token(self.pos_embed, self.grid_size, hw)  # other input sizes

    def forward_tokens(self, imgs: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N+1, D) after the final norm; the cls token sits at index N//2."""
        hw = self.patch_embed.grid_for(imgs)
        x = self.patch_embed(imgs)  # (B, N, D)
        mid = x.shape[1] // 2
        x = torch.cat([x[:, :mid], self.cls_token.expand(x.shape[0], -1, -1), x[:, mid:]], dim=1)
        x = x + self._pos_embed_for(hw)
        x = self.run_layers(x, hw=hw, cls_index=mid)[-1]
        return self.norm_f(x)

    def pool(self, tokens: Tensor) -> Tensor:
        mid = (tokens.shape[1] - 1) // 2
        if self.global_pool:
            return (tokens[:, :mid].mean(1) + tokens[:, mid + 1 :].mean(1)) / 2
        return tokens[:, mid]

    def forward_features(self, imgs: Tensor) -> Tensor:
        """Pooled feature (B, D): the cls token, or the mean of the two halves' means with global_pool."""
        return self.pool(self.forward_tokens(imgs))

    def forward_head(self, feats: Tensor) -> Tensor:
        return self.head(feats)

    def forward(self, imgs: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(imgs))

    def no_weight_decay(self) -> set:
        return {"pos_embed", "cls_token"}
