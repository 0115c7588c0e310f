"""Model configurations: plain dataclasses, JSON-able with `dataclasses.asdict`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import ConfigError

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


@dataclass
class BackboneConfig:
    embed_dim: int = 768
    depth: int = 12
    img_size: ImgSize = 224
    patch_size: int = 16
    in_chans: int = 3
    d_state: int = 16
    d_conv: int = 4
    expand: int = 1
    norm_eps: float = 1e-5
    drop_path_rate: float = 0.0
    size: Optional[str] = None  # registry name this config came from, for display only


@dataclass
class PretrainerConfig(BackboneConfig):
    kind: str = "pretrainer"
    img_size: ImgSize = 192
    cluster_size: int = 4  # clusters of k x k patches
    ordering: str = "row"
    order_seed: int = 0  # used by ordering="random"
    decoder_embed_dim: int = 512
    decoder_depth: int = 4
    decoder_num_heads: Optional[int] = None  # None: width / 64 (at least 1)
    decoder_mlp_ratio: float = 4.0
    feature_layers: Optional[List[int]] = None  # 1-based encoder layers feeding the decoder; None: reference choice
    target: str = "norm_pixel"


@dataclass
class ClassifierConfig(BackboneConfig):
    kind: str = "classifier"
    num_classes: int = 1000
    global_pool: bool = False
    head_init_std: float = 2e-5


@dataclass
class MAEConfig(BackboneConfig):
    kind: str = "mae"
    img_size: ImgSize = 192
    mask_ratio: float = 0.75
    decoder_embed_dim: int = 512
    decoder_depth: int = 4
    decoder_num_heads: Optional[int] = None
    decoder_mlp_ratio: float = 4.0
    target: str = "norm_pixel"


CONFIG_CLASSES = {"pretrainer": PretrainerConfig, "classifier": ClassifierConfig, "mae": MAEConfig}


def make_config(kind: str, size: Optional[str] = None, **overrides: Any):
    """Build a config of `kind` from a registry size plus overrides; unknown names are a clear error."""
    if kind not in CONFIG_CLASSES:
        raise ConfigError(f"unknown model kind {kind!r}; expected one of {sorted(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[kind]
    values: Dict[str, Any] = {}
    if size is not None:
        if size not in SIZES:
            raise ConfigError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
        values.update(embed_dim=SIZES[size][0], depth=SIZES[size][1], size=size)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown {kind} option(s) {unknown}; valid options: {sorted(names - {'kind'})}")
    values.update({k: v for k, v in overrides.items() if k != "kind"})
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
