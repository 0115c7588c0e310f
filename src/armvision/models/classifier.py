"""ARM classifier: the backbone with 4-direction mixers (2 with Vim's blocks), a middle cls token, and a linear head;
and `checkpoint_filter_fn`, which turns a pretraining (or another resolution's) state dict into this model's."""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.fx
from torch import Tensor, nn

from ..nn import MambaMixer, resample_with_middle_token
from ..nn.pos_embed import same_grid
from ..errors import CheckpointError, ConfigError
from .budget import FLOAT
from .backbone import (MambaBackbone, adapt_input_channels, check_block, is_multi_direction, take_indices,
                       tokens_to_format)
from .config import BackboneConfig, ClassifierConfig


def pos_embed_for_grid(pos_embed: Tensor, grid_size: Tuple[int, int], hw: Tuple[int, int]) -> Tensor:
    """The (1, 1+h*w, D) position table (cls slot in the middle) for an input whose patch grid is `hw`: the model's
    own at its grid, resampled for other input sizes. A leaf of torch.fx traces (`torch.fx.wrap` below): which of
    the two depends on the input's shape."""
    if same_grid(hw, grid_size):  # (symbolic sizes under torch.export: always resample, exact at grid_size)
        return pos_embed
    return resample_with_middle_token(pos_embed, grid_size, hw)


torch.fx.wrap("pos_embed_for_grid")


class ARMClassifier(MambaBackbone):
    directions = 4  # MambaMLP: row-major and column-major, forward and backward
    num_prefix_tokens = 1  # the cls token
    new_when_finetuning = ("cls_token", "norm_f", "head")  # what a pretraining checkpoint has no weights for
    fixed_input_size = False  # any multiple of the patch size: the position table is resampled on the fly

    def __init__(self, cfg: ClassifierConfig):
        dpr = [cfg.drop_path_rate * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]  # linspace(0, rate, depth)
        super().__init__(cfg, [0.0] + dpr[:-1])  # layer i gets linspace(0, rate, depth)[i-1], layer 0 gets 0
        self.num_classes = cfg.num_classes
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, cfg.embed_dim))
        self.norm_f = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.init_weights()

    @classmethod
    def extra_bytes(cls, cfg: ClassifierConfig, n: int) -> int:
        """The head."""
        return FLOAT * cfg.embed_dim * (cfg.num_classes or 0)

    @classmethod
    def scan_directions(cls, cfg: BackboneConfig) -> int:
        """4 for MambaMLP blocks; 2 for block="vim" (Vim's bidirectional scan: row-major forward and backward)."""
        return 2 if cfg.block == "vim" else cls.directions

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

    # ---- timm head interface ------------------------------------------------------------------------------------
    @property
    def global_pool(self) -> str:
        """timm's name of the pooling: "token" (the cls token, the reference) or "avg" (``global_pool=True``)."""
        return "avg" if self.config.global_pool else "token"

    @global_pool.setter
    def global_pool(self, value) -> None:
        if value in ("avg", True):
            self.config.global_pool = True
        elif value in ("token", False):
            self.config.global_pool = False
        else:
            raise ConfigError(f"global_pool must be 'token' (cls token) or 'avg' (mean of the patch tokens), got {value!r}")

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool=None) -> None:
        """New head for `num_classes` (0: identity), on the old head's device and dtype; optionally new pooling."""
        if global_pool is not None:
            self.global_pool = global_pool
        ref = self.cls_token
        self.num_classes = self.config.num_classes = num_classes
        self.head = (nn.Linear(self.embed_dim, num_classes, device=ref.device, dtype=ref.dtype)
                     if num_classes > 0 else nn.Identity())
        self._init_head()

    def _embed(self, imgs: Tensor):
        hw = self.patch_embed.grid_for(imgs)
        x = self.patch_embed(imgs)  # (B, N, D)
        mid = x.shape[1] // 2
        x = torch.cat([x[:, :mid], self.cls_token.expand(x.shape[0], -1, -1), x[:, mid:]], dim=1)
        return x + pos_embed_for_grid(self.pos_embed, self.grid_size, hw), hw, mid

    @staticmethod
    def cls_first(tokens: Tensor) -> Tensor:
        """Sequence order (cls at index N//2, where ARM runs it) -> timm order (cls at 0, then raster patches)."""
        mid = (tokens.shape[1] - 1) // 2
        return torch.cat([tokens[:, mid : mid + 1], tokens[:, :mid], tokens[:, mid + 1 :]], dim=1)

    def forward_tokens(self, imgs: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N+1, D) after the final norm, in the order the model runs them: cls at index N//2."""
        x, hw, mid = self._embed(imgs)
        x = self.run_layers(x, hw=hw, cls_index=mid)[-1]
        return self.norm_f(x)

    def forward_features(self, imgs: Tensor) -> Tensor:
        """(B, C, H, W) -> tokens (B, 1+N, D) after the final norm, timm layout: the cls token first
        (``num_prefix_tokens`` = 1), then the N patch tokens in raster order. (The model itself runs the cls token in
        the middle of the sequence; `forward_tokens` gives that order.)"""
        return self.cls_first(self.forward_tokens(imgs))

    def pool(self, tokens: Tensor) -> Tensor:
        """`forward_features` tokens (B, 1+N, D) -> the pooled feature (B, D): the cls token, or with global_pool the
        mean of the two halves' means (the reference's avg, exact for odd N too)."""
        if self.config.global_pool:
            mid = (tokens.shape[1] - 1) // 2
            return (tokens[:, 1 : 1 + mid].mean(1) + tokens[:, 1 + mid :].mean(1)) / 2
        return tokens[:, 0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """`forward_features` tokens -> logits; pre_logits=True: the pooled feature (B, D) (`pool`).
        An already pooled (B, D) input goes straight to the head."""
        if x.ndim == 3:
            x = self.pool(x)
        return x if pre_logits else self.head(x)

    def forward_pooled(self, imgs: Tensor) -> Tensor:
        """Pooled feature (B, D): what the head sees (cls token, or the global pool)."""
        return self.pool(self.forward_features(imgs))

    def forward(self, imgs: Tensor) -> Tensor:
        """(B, C, H, W) -> logits (B, num_classes), or the pooled feature (B, D) when num_classes=0.
        (`forward_head(forward_features(x))`, written without its input-rank check so that torch.fx can trace it.)"""
        return self.head(self.pool(self.forward_features(imgs)))

    # ---- dense features (timm features_only) ---------------------------------------------------------------------
    def forward_intermediates(
        self,
        x: Tensor,
        indices: Optional[Union[int, Sequence[int]]] = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Outputs of the blocks `indices` (0-based; an int n = the last n; None = all) as raster feature maps
        (B, D, h, w) ("NCHW") or tokens (B, h*w, D) ("NLC"), the cls token removed (returned alongside with
        return_prefix_tokens, as (map, cls (B, 1, D)) pairs). norm=True applies the final norm to each.
        Returns the list, or (forward_features output, list) unless intermediates_only."""
        take, max_index = take_indices(len(self.layers), indices)
        x, hw, mid = self._embed(x)
        stop = max_index + 1 if (stop_early or intermediates_only) else None
        outs = self.run_layers(x, collect=[i + 1 for i in take], stop=stop, hw=hw, cls_index=mid)
        last = outs.pop()
        by_index = dict(zip(sorted(set(take)), outs))
        intermediates = []
        for i in take:
            t = by_index[i]
            if norm:
                t = self.norm_f(t)
            spatial = tokens_to_format(torch.cat([t[:, :mid], t[:, mid + 1 :]], dim=1), hw, output_fmt)
            intermediates.append((spatial, t[:, mid : mid + 1]) if return_prefix_tokens else spatial)
        if intermediates_only:
            return intermediates
        return self.cls_first(self.norm_f(last)), intermediates

    def prune_intermediate_layers(self, indices: Union[int, Sequence[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the blocks after the last wanted one (and the final norm / head): a feature extractor."""
        take, max_index = take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        self.feature_info = self.feature_info[: max_index + 1]
        if prune_norm:
            self.norm_f = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take

    def no_weight_decay(self) -> set:
        return {"pos_embed", "cls_token"}

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    @classmethod
    def matches_state_dict(cls, sd: Mapping[str, Tensor]) -> bool:
        """A finetuned classifier's state dict: its mixers have the extra scan directions."""
        return is_multi_direction(sd)

    @classmethod
    def config_from_state_dict(cls, sd: Mapping[str, Tensor], args: Any = None) -> Dict[str, Any]:
        cfg = super().config_from_state_dict(sd, args)
        if "head.weight" in sd:
            cfg["num_classes"] = sd["head.weight"].shape[0]
        if args is not None and getattr(args, "global_pool", None) is not None:
            cfg["global_pool"] = bool(args.global_pool)
        return cfg

    def filter_state_dict(self, state_dict: Mapping[str, Tensor], report: Any = None) -> Dict[str, Tensor]:
        """`checkpoint_filter_fn(state_dict, self, report)`."""
        return checkpoint_filter_fn(state_dict, self, report)


def _grid_of(n: int, what: str) -> Tuple[int, int]:
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise CheckpointError(f"cannot resample {what}: {n} positions is not a square grid")
    return side, side


def _copy_directions(sd: Dict[str, Tensor], model: nn.Module) -> int:
    """Fill each mixer's extra-direction tensors from its first direction (names read from the model's mixers)."""
    added = 0
    for name, mixer in model.named_modules():
        if isinstance(mixer, MambaMixer):
            for extra, first in mixer.direction_copies().items():
                src, dst = f"{name}.{first}", f"{name}.{extra}"
                if src in sd and dst not in sd:
                    sd[dst] = sd[src].clone()
                    added += 1
    return added


def _resample_pos_embed(sd: Dict[str, Tensor], model: "ARMClassifier", has_cls: bool, report: Any) -> None:
    pe, target = sd["pos_embed"], model.pos_embed
    if has_cls:
        if pe.shape[1] != target.shape[1]:
            sd["pos_embed"] = resample_with_middle_token(pe, _grid_of(pe.shape[1] - 1, "pos_embed"), model.grid_size)
            report.resized.append(f"pos_embed {tuple(pe.shape)} -> {tuple(target.shape)} (bicubic, cls slot kept)")
        return
    # a pretraining table has no cls slot: resample, then a zero vector at the middle slot (reference finetuning)
    zero = torch.zeros(1, 1, pe.shape[-1], dtype=pe.dtype)
    sd["pos_embed"] = resample_with_middle_token(pe, _grid_of(pe.shape[1], "pos_embed"), model.grid_size, cls_pos=zero)
    report.resized.append(f"pos_embed {tuple(pe.shape)} -> {tuple(sd['pos_embed'].shape)} "
                          f"(bicubic {target.shape[1] - 1} patches + zero middle cls)")


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: ARMClassifier, report: Any = None) -> Dict[str, Tensor]:
    """Adapt a state dict to `model` (timm's pattern), as the reference finetuning script does.

    From a pretraining checkpoint (ARM, MAE or a bare backbone): tensors under names the classifier does not have
    (the decoder, its feature norms) are dropped, each single-direction mixer tensor is copied into all scan
    directions (4, or 2 for block="vim"), and the sin-cos table is resampled to the classifier's grid around a zero
    middle cls slot. A checkpoint of the other block (MambaMLP vs Vim) is refused. From a classifier checkpoint:
    pos_embed is resampled around its cls slot when the grid differs. From either, a patch embedding saved for
    another number of input channels is adapted (`adapt_input_channels`, timm's `in_chans`). `report` (a LoadReport)
    collects what was converted and resized.
    """
    report = report if report is not None else SimpleNamespace(converted=[], resized=[])
    check_block(state_dict, model)
    sd = dict(state_dict)
    adapt_input_channels(sd, model, report)
    from_classifier = ARMClassifier.matches_state_dict(sd)
    if not from_classifier:
        owned = {k.split(".")[0] for k in model.state_dict()}
        dropped = [k for k in sd if k.split(".")[0] not in owned]
        for k in dropped:
            del sd[k]
        if dropped:
            report.converted.append(f"dropped {len(dropped)} pretraining-only tensors (decoder or projection head)")
        added = _copy_directions(sd, model)
        if added:
            report.converted.append(f"copied single-direction mixer tensors into {model.directions} directions "
                                    f"({added} tensors)")
    if "pos_embed" in sd:
        _resample_pos_embed(sd, model, from_classifier, report)
    return sd

