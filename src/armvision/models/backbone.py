"""The plain Vision Mamba ("MambaMLP") backbone shared by the pretrainer and the classifier."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..nn import MambaMixer, MambaMLPBlock, PatchEmbed
from ..errors import ConfigError
from .config import BackboneConfig, img_hw


def lecun_normal_(t: Tensor) -> None:
    fan_in = t[0].numel()
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # truncated-normal correction, as in JAX's lecun_normal
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


def normalize_patches(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Each patch vector (..., p*p*C) normalised by its own mean and (unbiased) variance: ARM's and MAE's target."""
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)
    return (x - mean) / (var + eps) ** 0.5


class MambaBackbone(nn.Module):
    """Owns `patch_embed` and `layers` (parameter names as in the reference checkpoints)."""

    directions = 1

    def __init__(self, cfg: BackboneConfig, drop_path_rates: Optional[Sequence[float]] = None):
        super().__init__()
        self.config = cfg
        self.embed_dim, self.depth = cfg.embed_dim, cfg.depth
        self.patch_embed = PatchEmbed(img_hw(cfg.img_size), cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        dpr = list(drop_path_rates) if drop_path_rates is not None else [0.0] * cfg.depth
        self.layers = nn.ModuleList(
            MambaMLPBlock(
                cfg.embed_dim,
                MambaMixer(cfg.embed_dim, cfg.d_state, cfg.d_conv, cfg.expand, directions=self.directions),
                drop_path=dpr[i],
                norm_eps=cfg.norm_eps,
            )
            for i in range(cfg.depth)
        )

    @property
    def grid_size(self):
        return self.patch_embed.grid_size

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size[0]

    def patchify(self, imgs: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N, p*p*C), raster patches, pixels in (row, col, channel) order."""
        p = self.patch_size
        b, c, hh, ww = imgs.shape
        x = imgs.reshape(b, c, hh // p, p, ww // p, p)
        return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (hh // p) * (ww // p), p * p * c)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(B, N, p*p*C) raster patches -> (B, C, H, W)."""
        p, (h, w) = self.patch_size, self.grid_size
        b, _, d = x.shape
        c = d // (p * p)
        x = x.reshape(b, h, w, p, p, c)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(b, c, h * p, w * p)

    def check_images(self, imgs: Tensor) -> None:
        """Models with fixed sin-cos tables (pretrainers) take exactly the configured image size."""
        if self.patch_embed.grid_for(imgs) != tuple(self.grid_size):
            h, w = imgs.shape[-2:]
            eh, ew = self.patch_embed.img_size
            raise ConfigError(f"this model was built for {eh}x{ew} images, got {h}x{w}; resize the images or build the model with img_size={h}")

    def run_layers(self, x: Tensor, collect: Sequence[int] = (), **mixer_kwargs) -> List[Tensor]:
        """Run all blocks on (B, L, D); return the outputs of the 1-based layers in `collect`, plus the last."""
        feats = []
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x, **mixer_kwargs)
            if i in collect:
                feats.append(x)
        return feats + [x]

    def layer_outputs(self, x: Tensor, layers: Optional[Sequence[int]] = None) -> List[Tensor]:
        """Outputs (B, L, D) of the 1-based `layers` (default: the last), in the order asked, repeats allowed."""
        layers = list(layers) if layers else [self.depth]
        wanted = sorted(set(layers))
        collected = dict(zip(wanted, self.run_layers(x, collect=wanted)))
        return [collected[i] for i in layers]

    @torch.no_grad()
    def init_backbone_weights(self) -> None:
        """Reference initialisation: lecun-normal patch conv, zero Linear biases (except dt_proj), out_proj rescaled."""
        lecun_normal_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)
        for module in self.layers.modules():
            if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
                nn.init.zeros_(module.bias)
        for layer in self.layers:
            w = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            w /= math.sqrt(self.depth)

    def no_weight_decay(self) -> set:
        return {"pos_embed"}
