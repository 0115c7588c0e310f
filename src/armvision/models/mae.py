"""MAE-style pretraining of the same Mamba backbone: the paper's masked-modelling baseline.

Random masking (ratio 0.75 by default) -> the Mamba encoder over the visible tokens, kept in raster order ->
a light attention decoder over visible tokens + mask tokens -> normalised-pixel loss on the masked patches only.
Its checkpoints finetune exactly like ARM's (same backbone parameter names; the decoder is dropped).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import DecoderBlock, sincos_2d, xavier_linear_
from .backbone import MambaBackbone, normalize_patches
from .budget import FLOAT, layers_bytes
from .config import MAEConfig, decoder_heads


@dataclass
class MAEOutput:
    loss: Tensor  # scalar: mean over masked patches
    pred: Tensor  # (B, N, p*p*C) predictions for every patch (raster order)
    target: Tensor  # (B, N, p*p*C)
    mask: Tensor  # (B, N): 1 = masked (predicted), 0 = visible

    def __getitem__(self, key: str):
        return getattr(self, key)


def random_masking(batch: int, n: int, mask_ratio: float, device=None, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Per-sample random subset of kept tokens. Returns ids_keep (B, n_keep) sorted (raster order) and mask (B, N)."""
    n_keep = int(round(n * (1 - mask_ratio)))
    if not 1 <= n_keep < n:
        raise ConfigError(f"mask_ratio {mask_ratio} keeps {n_keep} of {n} patches; it must keep at least one and mask at least one")
    noise = torch.rand(batch, n, device=device, generator=generator)
    ids_keep = noise.argsort(dim=1)[:, :n_keep].sort(dim=1).values
    mask = torch.ones(batch, n, device=device)
    mask.scatter_(1, ids_keep, 0.0)
    return ids_keep, mask


class MAEPretrainer(MambaBackbone):
    """Mamba encoder over a random 25% of the patches (raster order) + self-attention decoder over all positions."""

    fixed_tables = ("pos_embed", "decoder_pos_embed")

    def __init__(self, cfg: MAEConfig):
        super().__init__(cfg, [cfg.drop_path_rate] * cfg.depth if cfg.drop_path_rate else None)
        h, w = self.grid_size
        d, dd = cfg.embed_dim, cfg.decoder_embed_dim
        self.mask_ratio = cfg.mask_ratio
        self.num_classes = 0
        self.pos_embed = nn.Parameter(sincos_2d(d, (h, w)).unsqueeze(0), requires_grad=False)
        self.norm_1 = nn.LayerNorm(d)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(dd, (h, w)).unsqueeze(0), requires_grad=False)
        heads = decoder_heads(dd, cfg.decoder_num_heads)
        self.decoder_blocks = nn.ModuleList(DecoderBlock(dd, heads, cfg.decoder_mlp_ratio) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, cfg.patch_size**2 * cfg.in_chans)
        self.init_weights()

    @classmethod
    def extra_bytes(cls, cfg: MAEConfig, n: int) -> int:
        """The decoder, its position table and projections, one image's decoder attention scores."""
        dd, pixels = cfg.decoder_embed_dim, cfg.patch_size**2 * cfg.in_chans
        heads = decoder_heads(dd, cfg.decoder_num_heads)
        decoder = layers_bytes(cfg.decoder_depth, lambda: DecoderBlock(dd, heads, cfg.decoder_mlp_ratio))
        return decoder + FLOAT * (n * dd + cfg.embed_dim * dd + dd * pixels + heads * n * n)

    @torch.no_grad()
    def init_weights(self) -> None:
        self.init_backbone_weights()
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        xavier_linear_(self.decoder_embed, self.decoder_pred, self.decoder_blocks)

    def forward_encoder(self, imgs: Tensor, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor, Tensor]:
        x = self.patch_embed(imgs) + self.pos_embed  # (B, N, D) raster
        b, n, d = x.shape
        ids_keep, mask = random_masking(b, n, self.mask_ratio, x.device, generator)
        x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, d))  # (B, n_keep, D), raster order kept
        return self.norm_1(self.run_layers(x)[-1]), ids_keep, mask

    def forward_decoder(self, latent: Tensor, ids_keep: Tensor) -> Tensor:
        x = self.decoder_embed(latent)  # (B, n_keep, dd)
        b, _, dd = x.shape
        n = self.decoder_pos_embed.shape[1]
        full = self.mask_token.expand(b, n, dd).clone()
        full.scatter_(1, ids_keep[..., None].expand(-1, -1, dd), x)  # visible tokens back in place
        full = full + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            full = blk(full, full, None)
        return self.decoder_pred(self.decoder_norm(full))  # (B, N, p*p*C)

    def forward_loss(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> MAEOutput:
        target = self.patchify(imgs)
        if self.config.target == "norm_pixel":
            target = normalize_patches(target)
        per_patch = ((pred.float() - target.float()) ** 2).mean(-1)  # (B, N)
        loss = (per_patch * mask).sum() / mask.sum()
        return MAEOutput(loss, pred, target, mask)

    def forward(self, imgs: Tensor, generator: Optional[torch.Generator] = None) -> MAEOutput:
        self.check_images(imgs)
        latent, ids_keep, mask = self.forward_encoder(imgs, generator)
        return self.forward_loss(imgs, self.forward_decoder(latent, ids_keep), mask)

    def encoder_outputs(self, imgs: Tensor, layers=None):
        """Encoder outputs of the 1-based `layers` (default: last) over all patches, raster order, no masking."""
        self.check_images(imgs)
        x = self.patch_embed(imgs) + self.pos_embed
        return self.layer_outputs(x, layers)

    def forward_features(self, imgs: Tensor) -> Tensor:
        """Last encoder layer over all patches (no masking), (B, N, D) raster tokens, no norm (timm convention)."""
        return self.encoder_outputs(imgs)[-1]

    def forward_intermediates(self, x: Tensor, indices=None, return_prefix_tokens: bool = False, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """As ARMPretrainer.forward_intermediates: raster maps of the 0-based blocks `indices`, no masking."""
        self.check_images(x)
        return self._encoder_intermediates(self.patch_embed(x) + self.pos_embed, indices, norm, stop_early,
                                           output_fmt, intermediates_only)

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True):
        return self._prune_blocks(indices)

    def no_weight_decay(self) -> set:
        return {"pos_embed", "decoder_pos_embed", "mask_token"}

    @classmethod
    def matches_state_dict(cls, sd: Mapping[str, Tensor]) -> bool:
        return "mask_token" in sd


def create_mae(size: str = "base", **overrides) -> MAEPretrainer:
    from .config import make_config

    return MAEPretrainer(make_config("mae", size, **overrides))
