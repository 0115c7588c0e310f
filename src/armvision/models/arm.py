"""ARM: autoregressive pretraining of a Vision Mamba backbone over clusters of patches.

Reads like the paper: `patchify` -> `to_clusters` / `order` -> `forward_encoder` (causal Mamba over clusters 1..n-1)
-> `forward_decoder` (cross-attention, block-causal) -> `forward_loss` (normalised pixels of clusters 2..n).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import sincos_2d
from .backbone import MambaBackbone, normalize_patches
from .config import ORDERINGS, TARGETS, PretrainerConfig, img_hw


@dataclass
class ARMOutput:
    loss: Tensor  # scalar
    pred: Tensor  # (B, T, p*p*C) predictions of the target tokens, sequence order
    target: Tensor  # (B, T, p*p*C), normalised per patch for target="norm_pixel"
    loss_per_patch: Tensor  # (B, T)

    def __getitem__(self, key: str):
        return getattr(self, key)

    def keys(self):
        return ["loss", "pred", "target", "loss_per_patch"]


class CrossAttention(nn.Module):
    """Multi-head attention of queries over a separate key/value sequence, with an additive mask."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"decoder width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: Tensor, kv: Tensor, mask: Optional[Tensor]) -> Tensor:
        b, nq, c = q.shape
        h = self.num_heads
        q = self.q(q).reshape(b, nq, h, c // h).transpose(1, 2)  # (B, H, Nq, hd)
        k, v = self.kv(kv).reshape(b, kv.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)  # 2 x (B, H, Nk, hd)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype))
        return self.proj(x.transpose(1, 2).reshape(b, nq, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DecoderBlock(nn.Module):
    """q = q + CrossAttn(LN(q), LN(kv), mask); q = q + MLP(LN(q)). Names as in the reference checkpoints."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.attn2 = CrossAttention(dim, num_heads)
        self.norm2_1 = nn.LayerNorm(dim)
        self.norm2_2 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, q: Tensor, kv: Tensor, mask: Optional[Tensor]) -> Tensor:
        q = q + self.attn2(self.norm2_1(q), self.norm2_2(kv), mask)
        return q + self.mlp(self.norm2(q))


def default_feature_layers(depth: int, n: int) -> List[int]:
    """The reference's choice ({6,8,10,12} of 12, {12,16,20,24} of 24), generalised: every depth//6-th layer up to the last."""
    step = max(1, depth // 6)
    return [max(1, depth - (n - 1 - k) * step) for k in range(n)]


def cluster_order_for(ordering: str, cluster_grid, seed: int = 0) -> Tensor:
    """Raster indices (in the cluster grid) of the clusters in prediction order."""
    ch, cw = cluster_grid
    raster = torch.arange(ch * cw, device="cpu")
    column = raster.reshape(ch, cw).t().reshape(-1)
    if ordering == "row":
        return raster
    if ordering == "column":
        return column
    if ordering == "row_reverse":
        return raster.flip(0)
    if ordering == "column_reverse":
        return column.flip(0)
    if ordering == "random":
        return torch.randperm(ch * cw, generator=torch.Generator().manual_seed(seed))
    raise ConfigError(f"unknown ordering {ordering!r}; choose one of {', '.join(ORDERINGS)}")


def block_causal_mask(num_blocks: int, block: int) -> Tensor:
    """Additive (num_blocks*block)^2 mask: block i of queries sees blocks 0..i of keys."""
    allowed = torch.tril(torch.ones(num_blocks, num_blocks, dtype=torch.bool, device="cpu"))
    allowed = allowed.repeat_interleave(block, 0).repeat_interleave(block, 1)
    return torch.zeros(allowed.shape, device="cpu").masked_fill(~allowed, float("-inf"))


class ARMPretrainer(MambaBackbone):
    """Causal Mamba encoder over clusters 1..n-1 + cross-attention decoder predicting clusters 2..n."""

    def __init__(self, cfg: PretrainerConfig):
        super().__init__(cfg, [cfg.drop_path_rate] * cfg.depth if cfg.drop_path_rate else None)
        h, w = self.grid_size
        k = cfg.cluster_size
        if k < 1 or h % k or w % k:
            ph, pw = img_hw(cfg.img_size)
            raise ConfigError(
                f"image size {ph}x{pw} with patch {cfg.patch_size} gives a {h}x{w} patch grid, which clusters of "
                f"{k}x{k} patches do not tile; use an image size that is a multiple of {k * cfg.patch_size} px"
            )
        self.cluster_size, self.cluster_grid = k, (h // k, w // k)
        self.num_clusters, self.tokens_per_cluster = self.cluster_grid[0] * self.cluster_grid[1], k * k
        if self.num_clusters < 2:
            raise ConfigError(f"ARM needs at least 2 clusters; {cfg.img_size} px / patch {cfg.patch_size} / cluster {k} gives 1")
        if cfg.target not in TARGETS:
            raise ConfigError(f"unknown target {cfg.target!r}; choose one of {', '.join(TARGETS)}")
        layers = list(cfg.feature_layers) if cfg.feature_layers else default_feature_layers(cfg.depth, cfg.decoder_depth)
        if len(layers) != cfg.decoder_depth or not all(1 <= i <= cfg.depth for i in layers):
            raise ConfigError(
                f"feature_layers {layers} must name {cfg.decoder_depth} encoder layers (one per decoder block) in 1..{cfg.depth}"
            )
        self.feature_layers = layers

        # Sequence order: clusters in prediction order, patches raster inside each cluster.
        self.register_buffer("cluster_order", cluster_order_for(cfg.ordering, self.cluster_grid, cfg.order_seed), persistent=False)
        self.register_buffer("token_order", self._token_order(), persistent=False)
        self.register_buffer("raster_index", torch.argsort(self.token_order), persistent=False)  # sequence -> raster
        self.num_classes = 0

        d, dd = cfg.embed_dim, cfg.decoder_embed_dim
        n_tok = h * w
        self.pos_embed = nn.Parameter(sincos_2d(d, (h, w)).unsqueeze(0), requires_grad=False)  # (1, N, D), raster
        heads = cfg.decoder_num_heads or max(1, dd // 64)
        self.ar_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.dec_pos_embed = nn.Parameter(sincos_2d(dd, (h, w)).unsqueeze(0), requires_grad=False)
        n_feat = len(layers)
        self.enc2dec = nn.Linear(d * n_feat, dd * n_feat)
        for i in range(1, n_feat + 1):
            self.add_module(f"norm_{i}", nn.LayerNorm(d))
        self.dec_block = nn.ModuleList(DecoderBlock(dd, heads, cfg.decoder_mlp_ratio) for _ in range(cfg.decoder_depth))
        self.ar_norm = nn.LayerNorm(dd)
        self.ar_pred = nn.Linear(dd, cfg.patch_size**2 * cfg.in_chans)
        self.register_buffer("mask", block_causal_mask(self.num_clusters - 1, self.tokens_per_cluster))
        assert n_tok == self.num_clusters * self.tokens_per_cluster
        self.init_weights()

    def _token_order(self) -> Tensor:
        (h, w), k, (_, cw) = self.grid_size, self.cluster_size, self.cluster_grid
        patch_ids = torch.arange(h * w, device="cpu").reshape(h, w)
        order = []
        for c in self.cluster_order.tolist():
            r0, c0 = (c // cw) * k, (c % cw) * k
            order.append(patch_ids[r0 : r0 + k, c0 : c0 + k].reshape(-1))
        return torch.cat(order)  # (N,) raster patch index at each sequence position

    @torch.no_grad()
    def init_weights(self) -> None:
        self.init_backbone_weights()
        nn.init.trunc_normal_(self.ar_token, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and (name.startswith("enc2dec") or name.startswith("ar_pred")) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for m in self.dec_block.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---- the paper's steps ----------------------------------------------------------------------------------
    def order(self, tokens: Tensor) -> Tensor:
        """Raster tokens (B, N, ...) -> sequence order (clusters in prediction order)."""
        return tokens[:, self.token_order]

    def to_clusters(self, tokens: Tensor) -> Tensor:
        """Raster tokens (B, N, D) -> (B, n_clusters, k*k, D) in prediction order."""
        b, _, d = tokens.shape
        return self.order(tokens).reshape(b, self.num_clusters, self.tokens_per_cluster, d)

    def _embed(self, imgs: Tensor) -> Tensor:
        self.check_images(imgs)
        return self.order(self.patch_embed(imgs) + self.pos_embed)  # (B, N, D), sequence order

    def encoder_outputs(self, imgs: Tensor, layers: Optional[Sequence[int]] = None, causal_input: bool = False) -> List[Tensor]:
        """Encoder outputs (B, L, D) of the 1-based `layers` (default: last) in *sequence* (cluster) order.

        causal_input=True feeds clusters 1..n-1 only (as in pretraining); False feeds the whole image.
        """
        x = self._embed(imgs)
        if causal_input:
            x = x[:, : (self.num_clusters - 1) * self.tokens_per_cluster]
        return self.layer_outputs(x, layers)

    def forward_encoder(self, imgs: Tensor) -> List[Tensor]:
        return self.encoder_outputs(imgs, self.feature_layers, causal_input=True)

    # ---- timm interface: tokens and dense maps in raster order ---------------------------------------------------
    def forward_features(self, imgs: Tensor) -> Tensor:
        """Last encoder layer over the whole image, (B, N, D) tokens in *raster* order (no cls token, no final norm:
        the pretrainer has neither). The encoder still runs in cluster order; only the output is permuted back."""
        return self.encoder_outputs(imgs)[-1][:, self.raster_index]

    def forward_intermediates(self, x: Tensor, indices: Optional[Union[int, Sequence[int]]] = None,
                              return_prefix_tokens: bool = False, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False):
        """Block outputs (0-based `indices`; int n = last n; None = all) over the whole image as raster-order maps
        (B, D, h, w) or tokens (B, h*w, D); norm=True layer-norms them without affine parameters."""
        return self._encoder_intermediates(self._embed(x), indices, norm, stop_early, output_fmt, intermediates_only,
                                           to_raster=self.raster_index)

    def prune_intermediate_layers(self, indices: Union[int, Sequence[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the encoder blocks after the last wanted one (the decoder then no longer runs: a feature extractor)."""
        return self._prune_blocks(indices)

    def forward_decoder(self, feats: Sequence[Tensor]) -> Tensor:
        """Encoder features -> predicted pixels (B, T, p*p*C) of clusters 2..n."""
        n = len(feats)
        latent = self.enc2dec(torch.cat([getattr(self, f"norm_{i + 1}")(f) for i, f in enumerate(feats)], dim=-1))
        b, length, _ = latent.shape
        latent = latent.reshape(b, length, -1, n)  # (B, L, dd, n): decoder block k reads [..., k]
        q = (self.ar_token + self.dec_pos_embed[:, self.token_order[self.tokens_per_cluster :]]).expand(b, -1, -1)
        for k, blk in enumerate(self.dec_block):
            q = blk(q, latent[..., k], self.mask)
        return self.ar_pred(self.ar_norm(q))

    def targets(self, imgs: Tensor) -> Tensor:
        target = self.order(self.patchify(imgs))[:, self.tokens_per_cluster :]  # (B, T, p*p*C)
        return normalize_patches(target) if self.config.target == "norm_pixel" else target

    def forward_loss(self, imgs: Tensor, pred: Tensor) -> ARMOutput:
        target = self.targets(imgs)
        per_patch = ((pred.float() - target.float()) ** 2).mean(-1)  # (B, T)
        return ARMOutput(per_patch.mean(), pred, target, per_patch)

    def forward(self, imgs: Tensor) -> ARMOutput:
        return self.forward_loss(imgs, self.forward_decoder(self.forward_encoder(imgs)))

    def no_weight_decay(self) -> set:
        return {"pos_embed", "dec_pos_embed", "ar_token"}
