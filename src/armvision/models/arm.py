"""ARM: autoregressive pretraining of a Vision Mamba backbone over clusters of patches.

Reads like the paper (MAE's names), one image's path through `forward`:
`patchify` / `patch_embed` -> `to_clusters` (k x k patches per cluster, put in prediction `order`) -> `causal_shift`
(inputs = clusters 1..n-1, targets = clusters 2..n) -> `forward_encoder` (one-direction, causal Mamba) ->
`forward_decoder` (cross-attention under `causal_cluster_mask`) -> `forward_loss` (normalised pixels of clusters
2..n). `unpatchify` turns predictions back into images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import DecoderBlock, sincos_2d, xavier_linear_
from .backbone import MambaBackbone, normalize_patches
from .budget import FLOAT, layers_bytes
from .config import ORDERINGS, PretrainerConfig, decoder_heads


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


def default_feature_layers(depth: int, n: int) -> List[int]:
    """The reference's choice ({6,8,10,12} of 12, {12,16,20,24} of 24), generalised: every depth//6-th layer up to the last."""
    step = max(1, depth // 6)
    return [max(1, depth - (n - 1 - k) * step) for k in range(n)]


def cluster_order_for(ordering: str, cluster_grid: Tuple[int, int], seed: int = 0) -> Tensor:
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


def causal_cluster_mask(num_clusters: int, tokens_per_cluster: int) -> Tensor:
    """The decoder's block-causal attention mask, additive, (L, L) with L = num_clusters * tokens_per_cluster.

    Enforces causality at the cluster level: the queries predicting cluster j+1 attend to the encoder tokens of
    clusters 1..j only (0 = allowed, -inf = hidden); tokens inside one cluster see each other. Called with the
    n-1 input clusters of the encoder (the last cluster is only ever a target).
    """
    allowed = torch.tril(torch.ones(num_clusters, num_clusters, dtype=torch.bool, device="cpu"))
    allowed = allowed.repeat_interleave(tokens_per_cluster, 0).repeat_interleave(tokens_per_cluster, 1)
    return torch.zeros(allowed.shape, device="cpu").masked_fill(~allowed, float("-inf"))


def causal_shift(clusters: Tensor) -> Tuple[Tensor, Tensor]:
    """The causal shift by one cluster: (B, n, k*k, ...) clusters in prediction order -> (inputs, targets) =
    clusters 1..n-1 and clusters 2..n, each flattened to (B, (n-1)*k*k, ...). The encoder output at cluster j
    predicts cluster j+1, so the first cluster is never a target and the last is never read."""
    return clusters[:, :-1].flatten(1, 2), clusters[:, 1:].flatten(1, 2)


class ARMPretrainer(MambaBackbone):
    """Causal Mamba encoder over clusters 1..n-1 + cross-attention decoder predicting clusters 2..n."""

    fixed_tables = ("pos_embed", "dec_pos_embed")
    decoder_keys = ("ar_pred.weight", "dec_block.0.attn2.q.weight")  # a state dict with these is an ARM pretrainer's

    def __init__(self, cfg: PretrainerConfig):
        super().__init__(cfg, [cfg.drop_path_rate] * cfg.depth if cfg.drop_path_rate else None)
        self._set_geometry(cfg)
        self.num_classes = 0
        (h, w), d, dd = self.grid_size, cfg.embed_dim, cfg.decoder_embed_dim
        self.pos_embed = nn.Parameter(sincos_2d(d, (h, w)).unsqueeze(0), requires_grad=False)  # (1, N, D), raster
        heads = decoder_heads(dd, cfg.decoder_num_heads)
        self.ar_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.dec_pos_embed = nn.Parameter(sincos_2d(dd, (h, w)).unsqueeze(0), requires_grad=False)  # (1, N, dd)
        n_feat = len(self.feature_layers)
        self.enc2dec = nn.Linear(d * n_feat, dd * n_feat)
        for i in range(1, n_feat + 1):
            self.add_module(f"norm_{i}", nn.LayerNorm(d))
        self.dec_block = nn.ModuleList(DecoderBlock(dd, heads, cfg.decoder_mlp_ratio) for _ in range(cfg.decoder_depth))
        self.ar_norm = nn.LayerNorm(dd)
        self.ar_pred = nn.Linear(dd, cfg.patch_size**2 * cfg.in_chans)
        self.register_buffer("mask", causal_cluster_mask(self.num_clusters - 1, self.tokens_per_cluster))
        self.init_weights()

    def _set_geometry(self, cfg: PretrainerConfig) -> None:
        """The cluster geometry and the feature layers of a (checked) config; the sequence-order indices."""
        k = cfg.cluster_size
        self.cluster_size, self.cluster_grid = k, cfg.cluster_grid
        self.num_clusters, self.tokens_per_cluster = self.cluster_grid[0] * self.cluster_grid[1], k * k
        layers = list(cfg.feature_layers) if cfg.feature_layers else default_feature_layers(cfg.depth, cfg.decoder_depth)
        self.feature_layers = layers
        # Sequence order: clusters in prediction order, patches raster inside each cluster.
        self.register_buffer("cluster_order", cluster_order_for(cfg.ordering, self.cluster_grid, cfg.order_seed), persistent=False)
        self.register_buffer("token_order", self._token_order(), persistent=False)
        self.register_buffer("raster_index", torch.argsort(self.token_order), persistent=False)  # sequence -> raster

    @classmethod
    def extra_bytes(cls, cfg: PretrainerConfig, n: int) -> int:
        """The decoder, its position table and input projection, the prediction head, the block-causal mask."""
        dd, f, pixels = cfg.decoder_embed_dim, cfg.decoder_depth, cfg.patch_size**2 * cfg.in_chans
        heads = decoder_heads(dd, cfg.decoder_num_heads)
        decoder = layers_bytes(f, lambda: DecoderBlock(dd, heads, cfg.decoder_mlp_ratio))
        masked = n - cfg.cluster_size**2  # tokens of the n-1 input clusters
        return decoder + FLOAT * (n * dd + cfg.embed_dim * f * dd * f + dd * pixels + masked * masked)

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
        for m in (self.enc2dec, self.ar_pred):
            nn.init.zeros_(m.bias)
        xavier_linear_(self.dec_block)

    # ---- the paper's steps ----------------------------------------------------------------------------------
    def order(self, tokens: Tensor) -> Tensor:
        """Cluster ordering: raster tokens (B, N, ...) -> sequence order (clusters in prediction order, patches
        raster inside each cluster)."""
        return tokens[:, self.token_order]

    def to_clusters(self, tokens: Tensor) -> Tensor:
        """Raster tokens (B, N, ...) -> (B, n_clusters, k*k, ...), clusters in prediction order."""
        b, _, *rest = tokens.shape
        return self.order(tokens).reshape(b, self.num_clusters, self.tokens_per_cluster, *rest)

    def _embed(self, imgs: Tensor) -> Tensor:
        self.check_images(imgs)
        return self.patch_embed(imgs) + self.pos_embed  # (B, N, D), raster order

    def encoder_outputs(self, imgs: Tensor, layers: Optional[Sequence[int]] = None, causal_input: bool = False) -> List[Tensor]:
        """Encoder outputs (B, L, D) of the 1-based `layers` (default: last) in *sequence* (cluster) order.

        causal_input=True feeds clusters 1..n-1 only (as in pretraining); False feeds the whole image.
        """
        x = self._embed(imgs)  # (B, N, D) raster
        if causal_input:
            x, _ = causal_shift(self.to_clusters(x))  # (B, (n-1)*k*k, D): clusters 1..n-1
        else:
            x = self.order(x)  # (B, N, D)
        return self.layer_outputs(x, layers)

    def forward_encoder(self, imgs: Tensor) -> List[Tensor]:
        """Causal encoder: clusters 1..n-1 through the one-direction Mamba (its output at cluster j has seen
        clusters 1..j only); the outputs of `feature_layers`, each (B, (n-1)*k*k, D), sequence order."""
        return self.encoder_outputs(imgs, self.feature_layers, causal_input=True)

    def forward_decoder(self, feats: Sequence[Tensor]) -> Tensor:
        """Encoder features -> predicted pixels (B, T, p*p*C) of clusters 2..n (T = (n-1)*k*k)."""
        n = len(feats)
        latent = self.enc2dec(torch.cat([getattr(self, f"norm_{i + 1}")(f) for i, f in enumerate(feats)], dim=-1))
        b, length, _ = latent.shape  # (B, L, n*dd)
        latent = latent.reshape(b, length, -1, n)  # (B, L, dd, n): decoder block k reads [..., k]
        _, target_pos = causal_shift(self.to_clusters(self.dec_pos_embed))  # (1, T, dd): positions of clusters 2..n
        q = (self.ar_token + target_pos).expand(b, -1, -1)  # (B, T, dd)
        for k, blk in enumerate(self.dec_block):
            q = blk(q, latent[..., k], self.mask)  # causal: queries of cluster j+1 see clusters 1..j
        return self.ar_pred(self.ar_norm(q))  # (B, T, p*p*C)

    def targets(self, imgs: Tensor) -> Tensor:
        """Pixels of clusters 2..n (the causal shift), (B, T, p*p*C), normalised per patch for "norm_pixel"."""
        _, target = causal_shift(self.to_clusters(self.patchify(imgs)))  # (B, T, p*p*C)
        return normalize_patches(target) if self.config.target == "norm_pixel" else target

    def forward_loss(self, imgs: Tensor, pred: Tensor) -> ARMOutput:
        """Mean squared error between `pred` and the targets, over pixels, patches and batch."""
        target = self.targets(imgs)
        per_patch = ((pred.float() - target.float()) ** 2).mean(-1)  # (B, T)
        return ARMOutput(per_patch.mean(), pred, target, per_patch)

    def forward(self, imgs: Tensor) -> ARMOutput:
        return self.forward_loss(imgs, self.forward_decoder(self.forward_encoder(imgs)))

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
        return self._encoder_intermediates(self.order(self._embed(x)), indices, norm, stop_early, output_fmt,
                                           intermediates_only, to_raster=self.raster_index)

    def prune_intermediate_layers(self, indices: Union[int, Sequence[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the encoder blocks after the last wanted one (the decoder then no longer runs: a feature extractor)."""
        return self._prune_blocks(indices)

    def no_weight_decay(self) -> set:
        return {"pos_embed", "dec_pos_embed", "ar_token"}

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    @classmethod
    def matches_state_dict(cls, sd: Mapping[str, Tensor]) -> bool:
        return any(k in sd for k in cls.decoder_keys)

    @classmethod
    def config_from_state_dict(cls, sd: Mapping[str, Tensor], args: Any = None) -> Dict[str, Any]:
        """Backbone fields, plus the decoder's width and depth and the cluster size (from the saved mask)."""
        cfg = super().config_from_state_dict(sd, args)
        cfg["decoder_embed_dim"] = sd["ar_token"].shape[-1]
        cfg["decoder_depth"] = len({k.split(".")[1] for k in sd if k.startswith("dec_block.")})
        if "mask" in sd:
            visible = int((sd["mask"][0] == 0).sum())  # the first query cluster sees one cluster of k*k tokens
            cfg["cluster_size"] = int(round(visible ** 0.5))
        return cfg
