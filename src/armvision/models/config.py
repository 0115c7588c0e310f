"""Model configurations: one plain dataclass per family, JSON-able with `dataclasses.asdict`.

These are the only place a model knob, its default and its check are written. Each field is a `knob` (default, help,
choices, range check, conversion), and building a config settles it (`fields.Knobs`): every value converted and
checked, and the values checked together (`inconsistency`: an image size the patch divides, clusters that tile the
patch grid, ...). The models trust a built config. A new size is one line in SIZES; a new knob is one line in its
dataclass (and its use in the model). `config_from_dict(BackboneConfig, values)` builds the family its "kind" names.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from ..argcheck import items, number
from ..errors import ConfigError
from ..fields import Knobs, Layer, as_hw, config_from_dict, knob, load_mapping, mapping
from ..ops import BACKENDS

SIZES: Dict[str, Tuple[int, int]] = {  # name -> (embed_dim, depth)
    "tiny": (192, 12),
    "small": (384, 12),
    "base": (768, 12),
    "large": (1024, 24),
    "huge": (1536, 24),
}
ORDERINGS = ("row", "column", "row_reverse", "column_reverse", "random")
TARGETS = ("norm_pixel", "pixel")
MAX_BLOCKS = 1024  # more blocks than any Vision Mamba has; a deeper model would take minutes just to build

ImgSize = Tuple[int, int]  # (height, width); a config given one number holds (n, n): fields.as_hw
POS = number(1)
BLOCKS = number(1, MAX_BLOCKS)
IMG_SIZE = items(2, POS)


@dataclass
class BackboneConfig(Knobs):
    size: Optional[str] = knob(None, "model size: sets width and depth (--embed-dim, --depth win)", tuple(SIZES),
                               flags=("--model",))
    embed_dim: int = knob(768, "width (--model sets it unless given)", check=POS)
    depth: int = knob(12, "number of blocks (--model sets it unless given)", check=BLOCKS)
    img_size: ImgSize = knob(192, "input resolution in pixels: one number, or height and width", check=IMG_SIZE,
                             convert=as_hw)
    patch_size: int = knob(16, "patch size in pixels", check=POS)
    in_chans: int = knob(3, "input channels", check=POS)
    d_state: int = knob(16, "Mamba state size", check=POS)
    d_conv: int = knob(4, "Mamba causal convolution width", check=POS)
    expand: int = knob(1, "Mamba inner width / width", check=POS)
    norm_eps: float = knob(1e-5, "LayerNorm epsilon", check=number(0, lo_open=True))
    drop_path_rate: float = knob(0.0, "stochastic depth rate", check=number(0, 1, hi_open=True),
                                 flags=("--drop-path-rate", "--drop-path"))
    block: str = knob("mambamlp", "residual block: mambamlp (ARM's: Mamba mixer + SwiGLU MLP; the classifier scans 4 "
                                  "directions) or vim (Vision Mamba's: Mamba mixer only, no MLP; the classifier scans "
                                  "2 directions, row-major forward and backward)", choices=("mambamlp", "vim"))
    scan_backend: str = knob("auto", "selective-scan backend of the Mamba mixers: auto (env ARMVISION_SCAN_BACKEND "
                                     "when set, else the fastest one here), or one of ref, torch, cpu, triton, cuda",
                             BACKENDS)

    @property
    def grid(self) -> Tuple[int, int]:
        """The patch grid (rows, columns)."""
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    def inconsistency(self) -> Optional[str]:
        (h, w), p = self.img_size, self.patch_size
        if h % p or w % p:
            return f"image size {h}x{w} is not a multiple of the patch size {p}"
        return None

    def incomplete(self) -> Optional[str]:
        """What a model still needs that this (valid) config leaves open, or None: a model is built only from a
        complete config."""
        return None

    @classmethod
    def implied(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        """A registry size sets width and depth (unless the same layer gives them)."""
        return size_values(values["size"]) if values.get("size") in SIZES else {}

    @classmethod
    def from_layers(cls, layers: Iterable[Layer], prefix: str = "") -> Any:
        """A config of this family; of any family on BackboneConfig itself (the layers' "kind" picks it)."""
        layers = list(layers)
        if cls is BackboneConfig:
            return family(layers).from_layers(layers, prefix)
        return super().from_layers(layers, prefix)


def decoder_heads(width: int, heads: Optional[int]) -> int:
    """The decoder's attention heads: `heads`, or by default width / 64 (at least 1)."""
    return heads or max(1, width // 64)


def _decoder_problem(width: int, heads: Optional[int]) -> Optional[str]:
    n = decoder_heads(width, heads)
    return f"decoder width {width} is not divisible by its {n} heads" if width % n else None


def _sincos_problem(**widths: int) -> Optional[str]:
    """Fixed 2D sin-cos position tables need widths divisible by 4 (pretrainers)."""
    for name, width in widths.items():
        if width % 4:
            return f"{name}={width}: a pretrainer's fixed 2D sin-cos position table needs a multiple of 4"
    return None


@dataclass
class PretrainerConfig(BackboneConfig):
    kind: str = knob("pretrainer", "model family (set by the factory)", choices=("pretrainer",))
    cluster_size: int = knob(4, "cluster side in patches (4: clusters of 4x4 patches)", check=POS)
    ordering: str = knob("row", "cluster order", ORDERINGS)
    order_seed: int = knob(0, "seed of the random cluster order", check=number(0, 2**63 - 1))
    decoder_embed_dim: int = knob(512, "decoder width", check=POS)
    decoder_depth: int = knob(4, "decoder blocks", check=BLOCKS)
    decoder_num_heads: Optional[int] = knob(None, "decoder heads (default: width / 64, at least 1)", check=POS)
    decoder_mlp_ratio: float = knob(4.0, "decoder MLP width / decoder width", check=number(0, lo_open=True))
    feature_layers: Optional[List[int]] = knob(None, "1-based encoder layers fed to the decoder, one per decoder "
                                                     "block (default: the reference's choice)", check=items(None, POS))
    target: str = knob("norm_pixel", "prediction target", TARGETS)

    @property
    def cluster_grid(self) -> Tuple[int, int]:
        (gh, gw), k = self.grid, self.cluster_size
        return gh // k, gw // k

    def inconsistency(self) -> Optional[str]:
        why = super().inconsistency()
        if why:
            return why
        (gh, gw), k, (h, w) = self.grid, self.cluster_size, self.img_size
        if gh % k or gw % k:
            return (f"image size {h}x{w} with patch {self.patch_size} gives a {gh}x{gw} patch grid, which clusters of "
                    f"{k}x{k} patches do not tile; use an image size that is a multiple of {k * self.patch_size} px")
        if self.cluster_grid[0] * self.cluster_grid[1] < 2:
            return f"ARM needs at least 2 clusters; {h}x{w} px / patch {self.patch_size} / cluster {k} gives 1"
        layers = self.feature_layers
        if layers is not None and (len(layers) != self.decoder_depth or not all(i <= self.depth for i in layers)):
            return (f"feature_layers {layers} must name {self.decoder_depth} encoder layers (one per decoder block) "
                    f"in 1..{self.depth}")
        return (_sincos_problem(embed_dim=self.embed_dim, decoder_embed_dim=self.decoder_embed_dim)
                or _decoder_problem(self.decoder_embed_dim, self.decoder_num_heads))


@dataclass
class ClassifierConfig(BackboneConfig):
    kind: str = knob("classifier", "model family (set by the factory)", choices=("classifier",))
    img_size: ImgSize = knob(224, "input resolution in pixels: one number, or height and width", check=IMG_SIZE,
                             convert=as_hw)
    num_classes: Optional[int] = knob(1000, "classes of the head (0: no head; finetuning: none = the number of "
                                            "class folders)", check=number(0))
    global_pool: bool = knob(False, "mean-pool the tokens instead of using the cls token")
    head_init_std: float = knob(2e-5, "std of the head's initial weights", check=number(0))

    def incomplete(self) -> Optional[str]:
        if self.num_classes is None:
            return ("num_classes is not set (none means 'as many classes as the class folders', which only finetuning "
                    "decides); give the number of classes")
        return None


@dataclass
class MAEConfig(BackboneConfig):
    kind: str = knob("mae", "model family (set by the factory)", choices=("mae",))
    mask_ratio: float = knob(0.75, "fraction of patches masked, in (0, 1)", check=number(0, 1, True, True))
    decoder_embed_dim: int = knob(512, "decoder width", check=POS)
    decoder_depth: int = knob(4, "decoder blocks", check=BLOCKS)
    decoder_num_heads: Optional[int] = knob(None, "decoder heads (default: width / 64, at least 1)", check=POS)
    decoder_mlp_ratio: float = knob(4.0, "decoder MLP width / decoder width", check=number(0, lo_open=True))
    target: str = knob("norm_pixel", "prediction target", TARGETS)

    def inconsistency(self) -> Optional[str]:
        why = super().inconsistency()
        if why:
            return why
        n = self.grid[0] * self.grid[1]
        keep = int(round(n * (1 - self.mask_ratio)))
        if not 1 <= keep < n:
            return (f"mask_ratio {self.mask_ratio} keeps {keep} of {n} patches; it must keep at least one and mask "
                    "at least one")
        return (_sincos_problem(embed_dim=self.embed_dim, decoder_embed_dim=self.decoder_embed_dim)
                or _decoder_problem(self.decoder_embed_dim, self.decoder_num_heads))


@dataclass
class ContrastiveConfig(BackboneConfig):
    kind: str = knob("contrastive", "model family (set by the factory)", choices=("contrastive",))
    temperature: float = knob(0.2, "NT-Xent temperature, > 0", check=number(0, lo_open=True))
    proj_layers: int = knob(3, "Linear layers of the projection head (hidden ones with BatchNorm + ReLU)",
                            check=BLOCKS)
    proj_hidden_dim: Optional[int] = knob(None, "projection head hidden width (default: the encoder width)", check=POS)
    proj_dim: int = knob(128, "projection head output width (the space NT-Xent compares in)", check=POS)

    def inconsistency(self) -> Optional[str]:
        return super().inconsistency() or _sincos_problem(embed_dim=self.embed_dim)


CONFIG_CLASSES = {"pretrainer": PretrainerConfig, "classifier": ClassifierConfig, "mae": MAEConfig,
                  "contrastive": ContrastiveConfig}


def family(layers: List[Layer]) -> type:
    """The config class the layers' (last) "kind" names."""
    kind = None
    for layer in layers:
        kind = mapping(layer.values, layer.source).get("kind", kind)
    if kind is None:
        raise ConfigError(f"{layers[-1].source}: a model config needs a 'kind' ({', '.join(CONFIG_CLASSES)})")
    if not isinstance(kind, str) or kind not in CONFIG_CLASSES:
        raise ConfigError(f"{layers[-1].source}: kind={kind!r}: choose one of {', '.join(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[kind]


def size_values(size: Optional[str]) -> Dict[str, Any]:
    """The fields a registry size sets: {size, embed_dim, depth}; ConfigError for an unknown name."""
    if size is None:
        return {}
    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    return {"size": size, "embed_dim": SIZES[size][0], "depth": SIZES[size][1]}


def make_config(kind: str, size: Optional[str] = None, **overrides: Any):
    """A config of family `kind` from a registry size plus overrides (config fields), checked as a file's values are."""
    values = {**({} if size is None else {"size": size}), **overrides, "kind": kind}
    return config_from_dict(BackboneConfig, values, f"{kind} options")


def saved_model_config(values: Any, source: str) -> Dict[str, Any]:
    """A model config saved beside weights (a checkpoint's "model_config", a config.json's), checked as every config
    is (errors name `source`), as a plain dict."""
    cfg = config_from_dict(BackboneConfig, values, source)
    why = cfg.incomplete()
    if why:
        raise ConfigError(f"{source}: {why}")
    return dataclasses.asdict(cfg)


def read_config_json(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """A save_pretrained folder's config.json, its "model_config" checked (as a plain dict); one line naming the file
    when it is not text, not JSON, not a mapping, has no "model_config", or a value that its field refuses."""
    values = load_mapping(path, str(path))
    if "model_config" not in values:
        raise ConfigError(f"{path}: no 'model_config' in it; expected a config.json written by save_pretrained")
    return {**values, "model_config": saved_model_config(values["model_config"], f"{path}: model_config")}
