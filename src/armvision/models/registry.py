"""Sizes and factories: `create_pretrainer`, `create_classifier`, `build_model`; timm registration."""
from __future__ import annotations

from typing import Any, Dict

from torch import nn

from .arm import ARMPretrainer
from .classifier import ARMClassifier
from .config import SIZES, config_from_dict, make_config

MODEL_CLASSES: Dict[str, Any] = {"pretrainer": ARMPretrainer, "classifier": ARMClassifier}


def create_pretrainer(size: str = "base", **overrides: Any) -> ARMPretrainer:
    """ARM pretraining model; the reference geometry (192 px, 4x4-patch clusters, row order) by default."""
    return ARMPretrainer(make_config("pretrainer", size, **overrides))


def create_classifier(size: str = "base", num_classes: int = 1000, img_size=224, global_pool: bool = False, **overrides: Any) -> ARMClassifier:
    """ARM classifier (4-direction mixers, middle cls token)."""
    return ARMClassifier(make_config("classifier", size, num_classes=num_classes, img_size=img_size, global_pool=global_pool, **overrides))


def register_model_class(kind: str, cls: Any) -> None:
    MODEL_CLASSES[kind] = cls


def build_model(config) -> nn.Module:
    """Model from a config dataclass or its `asdict` form (with "kind")."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    return MODEL_CLASSES[config.kind](config)


def register_timm() -> bool:
    """Make `timm.create_model("arm_base")` (classifier) and `"arm_base_pretrain"` work. Returns False without timm."""
    try:
        from timm.models import register_model
        from timm.models._registry import _model_entrypoints
    except ImportError:
        return False

    def make(size: str, kind: str):
        def entry(pretrained: bool = False, **kwargs):
            if pretrained:
                from ..errors import ConfigError

                raise ConfigError("armvision cannot download weights; build the model, then armvision.load_checkpoint(model, path)")
            for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
                kwargs.pop(k, None)
            return create_classifier(size, **kwargs) if kind == "classifier" else create_pretrainer(size, **kwargs)

        entry.__name__ = f"arm_{size}" + ("" if kind == "classifier" else "_pretrain")
        entry.__module__ = "armvision.models.registry"
        return entry

    for size in SIZES:
        for kind in ("classifier", "pretrainer"):
            fn = make(size, kind)
            if fn.__name__ not in _model_entrypoints:
                register_model(fn)
    return True
