"""The plain Vision Mamba backbone shared by the pretrainer and the classifier: ARM's MambaMLP blocks (the default)
or Vim's mixer-only blocks (`block="vim"`)."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..constants import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from ..nn import MambaMixer, PatchEmbed, direction_name, make_block
from ..nn.mamba import DIRECTION_SUFFIXES
from ..errors import CheckpointError, ConfigError
from .budget import FLOAT, layers_bytes, require_fits
from .config import BackboneConfig


def lecun_normal_(t: Tensor) -> None:
    fan_in = t[0].numel()
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # truncated-normal correction, as in JAX's lecun_normal
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


def normalize_patches(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Each patch vector (..., p*p*C) normalised by its own mean and (unbiased) variance: ARM's and MAE's target."""
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)
    return (x - mean) / (var + eps) ** 0.5


def take_indices(num_blocks: int, indices: Optional[Union[int, Sequence[int]]] = None) -> Tuple[List[int], int]:
    """timm's block-index convention: None = all blocks, an int n = the last n, a list = those 0-based indices
    (negative ones count from the end). Returns (sorted-as-given absolute indices, the largest)."""
    if indices is None:
        indices = num_blocks
    if isinstance(indices, int):
        if not 0 < indices <= num_blocks:
            raise ConfigError(f"asked for the last {indices} blocks of a model with {num_blocks}")
        taken = list(range(num_blocks - indices, num_blocks))
    else:
        taken = []
        for i in indices:
            j = num_blocks + i if i < 0 else i
            if not 0 <= j < num_blocks:
                raise ConfigError(f"block index {i} is out of range for a model with {num_blocks} blocks")
            taken.append(j)
    return taken, max(taken)


def tokens_to_format(tokens: Tensor, hw: Tuple[int, int], output_fmt: str) -> Tensor:
    """Raster tokens (B, h*w, D) -> "NLC" as is, or "NCHW" (B, D, h, w) feature maps."""
    if output_fmt == "NLC":
        return tokens
    if output_fmt == "NCHW":
        b, _, d = tokens.shape
        return tokens.reshape(b, hw[0], hw[1], d).permute(0, 3, 1, 2).contiguous()
    raise ConfigError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")


def is_multi_direction(sd: Mapping[str, Tensor]) -> bool:
    """True for a state dict whose mixers hold the backward-scan tensors (a finetuned classifier's: 4 directions,
    or 2 with block="vim")."""
    marker = "." + direction_name("conv1d.weight", DIRECTION_SUFFIXES[1])
    return any(k.endswith(marker) for k in sd)


def block_of_state_dict(sd: Mapping[str, Tensor]) -> Optional[str]:
    """Which residual block a state dict's layers are: "mambamlp" (they have an MLP), "vim" (a single `norm`, no MLP),
    or None when it has no blocks."""
    if any(re.match(r"^layers\.\d+\.mlp\.", k) for k in sd):
        return "mambamlp"
    if any(re.match(r"^layers\.\d+\.norm\.weight$", k) for k in sd):
        return "vim"
    return None


def check_block(sd: Mapping[str, Tensor], model: "MambaBackbone") -> None:
    """CheckpointError when the state dict's blocks are not the model's (a MambaMLP checkpoint into a Vim model, or
    the reverse): the layers would not fit, and the message says which block to build instead."""
    saved, built = block_of_state_dict(sd), model.config.block
    if saved is not None and saved != built:
        raise CheckpointError(
            f"block mismatch: the checkpoint has {saved} blocks but this {model.config.kind} was built with "
            f"block={built!r}; build it with block={saved!r} (--block {saved}) to load this checkpoint"
        )


def recipe_cfg(cfg: BackboneConfig, fixed_input_size: bool) -> Dict[str, Any]:
    """timm's pretrained_cfg for a model built from `cfg`: the data recipe armvision trains and evaluates it with
    (input size and channels from the config; ImageNet mean/std, bicubic resize, centre crop 0.875, as in
    data/transforms.py), so `timm.data.resolve_data_config(model=m)` gives its transform; the first conv and head."""
    h, w = cfg.img_size  # (height, width): configs hold it so
    num_classes = getattr(cfg, "num_classes", 0) or 0
    return dict(input_size=(cfg.in_chans, h, w), fixed_input_size=fixed_input_size, interpolation="bicubic",
                crop_pct=DEFAULT_CROP_PCT, crop_mode="center", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                num_classes=num_classes, first_conv="patch_embed.proj", classifier="head" if num_classes else None)


def adapt_input_channels(sd: Dict[str, Tensor], model: "MambaBackbone", report: Any) -> None:
    """A patch embedding saved for C input channels, made to fit a model taking another number (timm's `in_chans`):
    one channel gets the sum of the saved filters (a gray image counts as all channels at once); more channels get
    the saved ones repeated in turn, scaled by C / in_chans (exact when in_chans is a multiple of C: the same image
    in every group of C channels gives the saved response)."""
    key, want = "patch_embed.proj.weight", model.patch_embed.in_chans
    w = sd.get(key)
    if w is None or w.ndim != 4 or w.shape[1] == want:
        return
    saved = w.shape[1]
    if want == 1:
        new = w.float().sum(1, keepdim=True)
    else:
        new = w.float().repeat(1, math.ceil(want / saved), 1, 1)[:, :want] * (saved / want)
    sd[key] = new.to(w.dtype)
    how = "summed" if want == 1 else f"repeated, x{saved}/{want}"
    report.converted.append(f"{key}: {saved} -> {want} input channels ({how})")


def block_parameters(cfg: BackboneConfig, directions: int = 1) -> int:
    """Parameters of one encoder block of `cfg` (its block, width and mixer; one scan direction, as pretrained),
    counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        mixer = MambaMixer(cfg.embed_dim, cfg.d_state, cfg.d_conv, cfg.expand, directions=directions)
        block = make_block(cfg.block, cfg.embed_dim, mixer)
    return sum(p.numel() for p in block.parameters())


def vim_matched_config(cfg: BackboneConfig, expand: int = 2) -> BackboneConfig:
    """A block="vim" copy of a MambaMLP config with about its parameter count: same width, Vim's expand (2), and the
    depth whose blocks hold as many parameters as the MambaMLP blocks (Vim drops the MLP and goes deeper: base
    768 x 12 -> 768 x 21). Explicit `feature_layers` of a pretrainer keep their relative depth."""
    if cfg.block != "mambamlp":
        raise ConfigError(f"vim_matched_config takes a block='mambamlp' config, got block={cfg.block!r}")
    vim = dataclasses.replace(cfg, block="vim", expand=expand)
    vim.depth = max(1, round(cfg.depth * block_parameters(cfg) / block_parameters(vim)))
    if getattr(cfg, "feature_layers", None):
        vim.feature_layers = [max(1, round(i * vim.depth / cfg.depth)) for i in cfg.feature_layers]
    return vim


class MambaBackbone(nn.Module):
    """Owns `patch_embed` and `layers` (parameter names as in the reference checkpoints).

    Also the timm model interface shared by all our models: `num_features`, `set_grad_checkpointing`,
    `group_matcher` (layer-wise lr decay), `feature_info`, `forward_intermediates`, `prune_intermediate_layers`, and
    `pretrained_cfg` (= `default_cfg`): the data recipe of the model's own config (`recipe_cfg`; loaders add the
    checkpoint's `label_names`, timm's `create_model` puts the registered cfg in its place).
    """

    directions = 1  # scan directions of the mixers (an instance may differ: `scan_directions`)
    num_prefix_tokens = 0  # tokens before the raster patch tokens in `forward_features` (timm convention)
    fixed_tables: Tuple[str, ...] = ()  # frozen tensors that are functions of the geometry (sin-cos tables)
    fixed_input_size = True  # takes only the configured image size (`check_images`); the classifier takes any

    def __init__(self, cfg: BackboneConfig, drop_path_rates: Optional[Sequence[float]] = None):
        super().__init__()
        (h, w), kind = cfg.img_size, getattr(cfg, "kind", "backbone")
        why = cfg.incomplete()
        if why:
            raise ConfigError(f"cannot build a {kind}: {why}")
        require_fits(f"a {kind} {cfg.embed_dim} wide, {cfg.depth} deep, at {h}x{w} px", self.bytes_needed(cfg))
        self.config = cfg
        self.directions = self.scan_directions(cfg)
        self.embed_dim, self.depth = cfg.embed_dim, cfg.depth
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        dpr = list(drop_path_rates) if drop_path_rates is not None else [0.0] * cfg.depth
        self.layers = nn.ModuleList(
            make_block(
                cfg.block,
                cfg.embed_dim,
                MambaMixer(cfg.embed_dim, cfg.d_state, cfg.d_conv, cfg.expand, directions=self.directions,
                           scan_backend=cfg.scan_backend),
                drop_path=dpr[i],
                norm_eps=cfg.norm_eps,
            )
            for i in range(cfg.depth)
        )
        self.num_features = self.head_hidden_size = cfg.embed_dim
        self.grad_checkpointing = False
        reduction = self.patch_embed.patch_size[0]
        self.feature_info = [dict(module=f"layers.{i}", num_chs=cfg.embed_dim, reduction=reduction) for i in range(cfg.depth)]
        self.pretrained_cfg = self.default_cfg = recipe_cfg(cfg, self.fixed_input_size)

    @classmethod
    def bytes_needed(cls, cfg: BackboneConfig) -> int:
        """A lower bound of the memory a model of `cfg` takes, counted without building it (see budget.py): the
        blocks, the patch projection and a position table, one image's scan states through one block, and what the
        family adds (`extra_bytes`)."""
        n, d = cfg.grid[0] * cfg.grid[1], cfg.embed_dim
        directions = cls.scan_directions(cfg)
        blocks = layers_bytes(cfg.depth, lambda: make_block(
            cfg.block, d, MambaMixer(d, cfg.d_state, cfg.d_conv, cfg.expand, directions=directions)))
        values = d * (cfg.in_chans * cfg.patch_size**2 + 1) + n * d + n * d * cfg.expand * cfg.d_state
        return blocks + FLOAT * values + cls.extra_bytes(cfg, n)

    @classmethod
    def extra_bytes(cls, cfg: BackboneConfig, n: int) -> int:
        """Bytes of what the family adds to the backbone of `cfg` (`n` patches): heads, decoders, tables."""
        return 0

    @classmethod
    def scan_directions(cls, cfg: BackboneConfig) -> int:
        """Scan directions of this family's mixers for `cfg` (pretrainers: 1, causal)."""
        return cls.directions

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

    # ---- timm interface ----------------------------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of keeping its activations (training only)."""
        self.grad_checkpointing = bool(enable)

    def group_matcher(self, coarse: bool = False) -> Dict:
        """timm's grouping for layer-wise lr decay: embeddings first, one group per block; everything else (final
        norm, head, decoder) falls into the last group, as in train/optim.py's `classifier_layer_id`."""
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed",
                    blocks=r"^layers\.(\d+)" if coarse else [(r"^layers\.(\d+)", None)])

    def _block(self, layer: nn.Module, x: Tensor, **mixer_kwargs) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(layer, x, use_reentrant=False, **mixer_kwargs)
        return layer(x, **mixer_kwargs)

    def run_layers(self, x: Tensor, collect: Sequence[int] = (), stop: Optional[int] = None, **mixer_kwargs) -> List[Tensor]:
        """Run the blocks (the first `stop`, default all) on (B, L, D); return the outputs of the 1-based layers in
        `collect`, plus the last one run."""
        feats = []
        layers = self.layers if stop is None else self.layers[:stop]
        for i, layer in enumerate(layers, start=1):
            x = self._block(layer, x, **mixer_kwargs)
            if i in collect:
                feats.append(x)
        return feats + [x]

    def _encoder_intermediates(self, seq: Tensor, indices, norm: bool, stop_early: bool, output_fmt: str,
                               intermediates_only: bool, to_raster: Optional[Tensor] = None):
        """forward_intermediates of the models without a cls token or final norm (pretrainers). `seq` is the embedded
        sequence; `to_raster` (if given) permutes sequence positions back to raster order. norm=True layer-norms each
        token without affine parameters (these models have no final norm of their own)."""
        take, max_index = take_indices(len(self.layers), indices)
        stop = max_index + 1 if (stop_early or intermediates_only) else None
        outs = self.run_layers(seq, collect=[i + 1 for i in take], stop=stop)
        last = outs.pop()
        by_index = dict(zip(sorted(set(take)), outs))

        def raster(t: Tensor) -> Tensor:
            return t if to_raster is None else t[:, to_raster]

        intermediates = []
        for i in take:
            t = by_index[i]
            if norm:
                t = F.layer_norm(t, t.shape[-1:])
            intermediates.append(tokens_to_format(raster(t), self.grid_size, output_fmt))
        if intermediates_only:
            return intermediates
        return raster(last), intermediates

    def _prune_blocks(self, indices) -> List[int]:
        take, max_index = take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        self.feature_info = self.feature_info[: max_index + 1]
        return take

    def get_classifier(self) -> nn.Module:
        return nn.Identity()

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pretrainers have no head: the mean of the `forward_features` tokens (B, D)."""
        return x.mean(1) if x.ndim == 3 else x

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

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    @classmethod
    def matches_state_dict(cls, sd: Mapping[str, Tensor]) -> bool:
        """Whether a state dict is this model family's own (subclasses recognise theirs by their own names)."""
        return False

    @classmethod
    def config_from_state_dict(cls, sd: Mapping[str, Tensor], args: Any = None) -> Dict[str, Any]:
        """Config fields read off a state dict's shapes (parameter names are the reference's). `args`: the
        reference's argparse.Namespace, if the checkpoint has one (subclasses read their fields from it)."""
        if "patch_embed.proj.weight" not in sd:
            raise CheckpointError("the state dict has no patch_embed.proj.weight: not an ARM / Vision Mamba checkpoint")
        w = sd["patch_embed.proj.weight"]  # (D, C, p, p)
        layer_ids = {int(m.group(1)) for k in sd if (m := re.match(r"^layers\.(\d+)\.", k))}
        cfg: Dict[str, Any] = dict(embed_dim=w.shape[0], in_chans=w.shape[1], patch_size=w.shape[2],
                                   depth=max(layer_ids) + 1 if layer_ids else 0)
        cfg.update(MambaMixer.config_from_state_dict(sd, "layers.0.mixer.", cfg["embed_dim"]))
        if block_of_state_dict(sd) == "vim":  # (MambaMLP, the default, is left implicit)
            cfg["block"] = "vim"
        n_patches = sd["pos_embed"].shape[1] - cls.num_prefix_tokens if "pos_embed" in sd else 0
        side = int(round(math.sqrt(n_patches)))
        if n_patches and side * side == n_patches:
            cfg["img_size"] = side * cfg["patch_size"]
        return cfg

    def filter_state_dict(self, state_dict: Mapping[str, Tensor], report: Any = None) -> Dict[str, Tensor]:
        """The pretrainers' checkpoint_filter_fn: the `fixed_tables` load as saved when they fit and are the model's
        own (regenerated) for another geometry; buffers (the block-causal mask) are always derived from the model's
        geometry. A finetuned classifier's state dict, or one of another block, is refused."""
        check_block(state_dict, self)
        if is_multi_direction(state_dict):
            raise CheckpointError(
                f"this is a finetuned classifier checkpoint; a {self.config.kind} needs a pretraining checkpoint "
                "(build the model with armvision.create_classifier to load it)"
            )
        sd, own = dict(state_dict), self.state_dict()
        buffers = {name for name, _ in self.named_buffers()}
        for k in own:
            if k in sd and (k in buffers or (k in self.fixed_tables and sd[k].shape != own[k].shape)):
                if sd[k].shape != own[k].shape and report is not None:
                    report.resized.append(f"{k} {tuple(sd[k].shape)} -> {tuple(own[k].shape)} (regenerated for this geometry)")
                sd[k] = own[k].clone()
        return sd
