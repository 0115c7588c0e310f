"""Model configurations: one plain dataclass per family, JSON-able with `dataclasses.asdict`.

These are the only place a model knob and its default are written. Each field is a `knob` (default, help, choices,
range check), so the training configs that nest these dataclasses get a checked command-line flag per field for free.
A new size is one line in SIZES; a new knob is one line in its dataclass (and its use in the model).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from ..argcheck import items, number
from ..errors import ConfigError
from ..fields import knob
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

ImgSize = Union[int, Tuple[int, int], List[int]]
POS = number(1)


def _img_size(v: Any) -> Optional[str]:
    """An image size: one number >= 1, or [height, width]."""
    return POS(v) if not isinstance(v, (list, tuple)) else items(2, POS)(v)


@dataclass
class BackboneConfig:
    size: Optional[str] = knob(None, "model size: sets width and depth (--embed-dim, --depth win)", tuple(SIZES),
                               flags=("--model",))
    embed_dim: int = knob(768, "width (--model sets it unless given)", check=POS)
    depth: int = knob(12, "number of blocks (--model sets it unless given)", check=POS)
    img_size: ImgSize = knob(224, "input resolution in pixels", check=_img_size)
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


@dataclass
class PretrainerConfig(BackboneConfig):
    kind: str = knob("pretrainer", "model family (set by the factory)")
    img_size: ImgSize = knob(192, "input resolution in pixels", check=_img_size)
    cluster_size: int = knob(4, "cluster side in patches (4: clusters of 4x4 patches)", check=POS)
    ordering: str = knob("row", "cluster order", ORDERINGS)
    order_seed: int = knob(0, "seed of the random cluster order", check=number(0))
    decoder_embed_dim: int = knob(512, "decoder width", check=POS)
    decoder_depth: int = knob(4, "decoder blocks", check=POS)
    decoder_num_heads: Optional[int] = knob(None, "decoder heads (default: width / 64, at least 1)", check=POS)
    decoder_mlp_ratio: float = knob(4.0, "decoder MLP width / decoder width", check=number(0, lo_open=True))
    feature_layers: Optional[List[int]] = knob(None, "1-based encoder layers fed to the decoder, one per decoder "
                                                     "block (default: the reference's choice)", check=items(None, POS))
    target: str = knob("norm_pixel", "prediction target", TARGETS)


@dataclass
class ClassifierConfig(BackboneConfig):
    kind: str = knob("classifier", "model family (set by the factory)")
    num_classes: Optional[int] = knob(1000, "classes of the head (finetuning: none = the number of class folders)",
                                      check=number(0))
    global_pool: bool = knob(False, "mean-pool the tokens instead of using the cls token")
    head_init_std: float = knob(2e-5, "std of the head's initial weights", check=number(0))


@dataclass
class MAEConfig(BackboneConfig):
    kind: str = knob("mae", "model family (set by the factory)")
    img_size: ImgSize = knob(192, "input resolution in pixels", check=_img_size)
    mask_ratio: float = knob(0.75, "fraction of patches masked, in (0, 1)", check=number(0, 1, True, True))
    decoder_embed_dim: int = knob(512, "decoder width", check=POS)
    decoder_depth: int = knob(4, "decoder blocks", check=POS)
    decoder_num_heads: Optional[int] = knob(None, "decoder heads (default: width / 64, at least 1)", check=POS)
    decoder_mlp_ratio: float = knob(4.0, "decoder MLP width / decoder width", check=number(0, lo_open=True))
    target: str = knob("norm_pixel", "prediction target", TARGETS)


@dataclass
class ContrastiveConfig(BackboneConfig):
    kind: str = knob("contrastive", "model family (set by the factory)")
    img_size: ImgSize = knob(192, "input resolution in pixels", check=_img_size)
    temperature: float = knob(0.2, "NT-Xent temperature, > 0", check=number(0, lo_open=True))
    proj_layers: int = knob(3, "Linear layers of the projection head (hidden ones with BatchNorm + ReLU)", check=POS)
    proj_hidden_dim: Optional[int] = knob(None, "projection head hidden width (default: the encoder width)", check=POS)
    proj_dim: int = knob(128, "projection head output width (the space NT-Xent compares in)", check=POS)


CONFIG_CLASSES = {"pretrainer": PretrainerConfig, "classifier": ClassifierConfig, "mae": MAEConfig,
                  "contrastive": ContrastiveConfig}


def size_values(size: Optional[str]) -> Dict[str, Any]:
    """The fields a registry size sets: {size, embed_dim, depth}; ConfigError for an unknown name."""
    if size is None:
        return {}
    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    return {"size": size, "embed_dim": SIZES[size][0], "depth": SIZES[size][1]}


def make_config(kind: str, size: Optional[str] = None, **overrides: Any):
    """Build a config of `kind` from a registry size plus overrides; unknown names are a clear error."""
    if kind not in CONFIG_CLASSES:
        raise ConfigError(f"unknown model kind {kind!r}; expected one of {sorted(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown {kind} option(s) {unknown}; valid options: {sorted(names - {'kind'})}")
    values = {**size_values(size), **{k: v for k, v in overrides.items() if k != "kind"}}
    return cls(**values)


def config_from_dict(d: Dict[str, Any]):
    """Inverse of `dataclasses.asdict(config)`."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind is None:
        raise ConfigError(f"model config has no 'kind' field: {sorted(d)}")
    name = d.pop("size", None)
    cfg = make_config(kind, None, **d)
    cfg.size = name
    return cfg


def img_hw(img_size: ImgSize) -> Tuple[int, int]:
    if isinstance(img_size, int):
        return img_size, img_size
    return int(img_size[0]), int(img_size[1])
