"""Sizes and factories: `create_pretrainer`, `create_classifier`, `build_model`; timm registration."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

import torch
from torch import nn

from .arm import ARMPretrainer
from .classifier import ARMClassifier
from ..constants import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from .config import SIZES, BackboneConfig, config_from_dict, make_config

MODEL_CLASSES: Dict[str, Any] = {"pretrainer": ARMPretrainer, "classifier": ARMClassifier}


def create_pretrainer(size: str = "base", **overrides: Any) -> ARMPretrainer:
    """ARM pretraining model; the reference geometry (192 px, 4x4-patch clusters, row order) by default."""
    return ARMPretrainer(make_config("pretrainer", size, **overrides))


def create_classifier(size: str = "base", **overrides: Any) -> ARMClassifier:
    """ARM classifier (4-direction mixers, middle cls token); `overrides` are ClassifierConfig fields (defaults:
    1000 classes, 224 px, cls-token pooling)."""
    return ARMClassifier(make_config("classifier", size, **overrides))


def register_model_class(kind: str, cls: Any) -> None:
    MODEL_CLASSES[kind] = cls


def build_model(config) -> nn.Module:
    """Model from a config dataclass or its `asdict` form (with "kind")."""
    if isinstance(config, dict):
        config = config_from_dict(BackboneConfig, config, "model config")
    return MODEL_CLASSES[config.kind](config)


def block_parameters(cfg: BackboneConfig, directions: int = 1) -> int:
    """Parameters of one encoder block of `cfg` (its block, width and mixer; one scan direction, as pretrained),
    counted on the meta device (nothing allocated)."""
    from ..nn import MambaMixer, make_block

    with torch.device("meta"):
        mixer = MambaMixer(cfg.embed_dim, cfg.d_state, cfg.d_conv, cfg.expand, directions=directions)
        block = make_block(cfg.block, cfg.embed_dim, mixer)
    return sum(p.numel() for p in block.parameters())


def vim_matched_config(cfg: BackboneConfig, expand: int = 2) -> BackboneConfig:
    """A block="vim" copy of a MambaMLP config with about its parameter count: same width, Vim's expand (2), and the
    depth whose blocks hold as many parameters as the MambaMLP blocks (Vim drops the MLP and goes deeper: base
    768 x 12 -> 768 x 21). Explicit `feature_layers` of a pretrainer keep their relative depth."""
    from ..errors import ConfigError

    if cfg.block != "mambamlp":
        raise ConfigError(f"vim_matched_config takes a block='mambamlp' config, got block={cfg.block!r}")
    vim = dataclasses.replace(cfg, block="vim", expand=expand)
    vim.depth = max(1, round(cfg.depth * block_parameters(cfg) / block_parameters(vim)))
    if getattr(cfg, "feature_layers", None):
        vim.feature_layers = [max(1, round(i * vim.depth / cfg.depth)) for i in cfg.feature_layers]
    return vim


# ---- timm ------------------------------------------------------------------------------------------------------
OFFICIAL_SIZES = ("base", "large", "huge")  # the sizes the paper released weights for
HF_HUB_ID = "OliverRen/ARM"


def timm_name(size: str, kind: str) -> str:
    return f"arm_{size}" + ("" if kind == "classifier" else "_pretrain")


def hub_filename(size: str, kind: str) -> str:
    """File name of the official weights in the Hub repo (override with pretrained_cfg_overlay=dict(hf_hub_filename=...))."""
    return f"arm_{size}_" + ("finetuned.pth" if kind == "classifier" else "pretrain.pth")


def pretrained_cfg(size: str, kind: str) -> Dict[str, Any]:
    """timm pretrained_cfg of one registered model: data config (what resolve_data_config / create_transform use), head
    names for weight adaptation, and where the official weights live on the Hub."""
    classifier = kind == "classifier"
    cfg = dict(
        input_size=(3, 224, 224) if classifier else (3, 192, 192),
        interpolation="bicubic", crop_pct=DEFAULT_CROP_PCT, crop_mode="center", mean=IMAGENET_MEAN, std=IMAGENET_STD,
        num_classes=1000 if classifier else 0, first_conv="patch_embed.proj", classifier="head" if classifier else None,
        license="apache-2.0", paper_name="Autoregressive Pretraining with Mamba in Vision", paper_ids="arXiv:2406.07537",
        origin_url="https://github.com/OliverRensu/ARM",
        description=("ARM classifier, finetuned on ImageNet-1k" if classifier else "ARM pretraining model (encoder + decoder), ImageNet-1k"),
    )
    if size in OFFICIAL_SIZES:
        cfg.update(hf_hub_id=HF_HUB_ID, hf_hub_filename=hub_filename(size, kind))
    return cfg


def _timm_kwargs(kind: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Model kwargs as timm passes them (num_classes, global_pool "avg"/"token", in_chans) -> our config fields."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if kind == "classifier":
        gp = kwargs.pop("global_pool", None)
        if gp is not None:
            if gp not in ("avg", "token", True, False):
                from ..errors import ConfigError

                raise ConfigError(f"global_pool must be 'token' or 'avg' for ARM classifiers, got {gp!r}")
            kwargs["global_pool"] = gp in ("avg", True)
    else:
        if kwargs.pop("num_classes", 0):
            from ..errors import ConfigError

            raise ConfigError(f"{kind} models have no classification head; use arm_<size> for a classifier")
        kwargs.pop("global_pool", None)
    return kwargs


def load_pretrained_weights(model: nn.Module, cfg: Dict[str, Any], key: str = "model",
                            cache_dir=None) -> Any:
    """Weights named by a timm pretrained_cfg (local `file`, or `hf_hub_id` [+ '@revision'] + `hf_hub_filename`
    through huggingface_hub's cache) into `model`, by armvision's safe loader; a head of another size is left out."""
    from .checkpoint import load_checkpoint, read_checkpoint, select_state_dict
    from .hub import hub_download, pretrained_source

    src = pretrained_source(cfg)
    path = src["file"] if "file" in src else hub_download(src["repo_id"], src["filename"], src["revision"], cache_dir)
    sd = select_state_dict(read_checkpoint(path), key, str(path))
    name = cfg.get("classifier") or "head"  # the pretrained_cfg names the head module
    head, saved = getattr(model, name, None), sd.get(f"{name}.weight")
    exclude = ()
    if not isinstance(head, nn.Linear) or (saved is not None and saved.shape != head.weight.shape):
        exclude = (f"{name}.",)  # timm semantics: another num_classes keeps the backbone, re-initialises the head
    return load_checkpoint(model, {key: sd}, key=key, exclude=exclude)


def _timm_entry(size: str, kind: str):
    name = timm_name(size, kind)

    def entry(pretrained: bool = False, **kwargs):
        from timm.models import build_model_with_cfg, resolve_pretrained_cfg

        key = kwargs.pop("checkpoint_key", "model")
        cache_dir = kwargs.pop("cache_dir", None)
        cfg = resolve_pretrained_cfg(name, kwargs.pop("pretrained_cfg", None), kwargs.pop("pretrained_cfg_overlay", None)).to_dict()
        if pretrained:
            from .hub import pretrained_source

            pretrained_source(cfg)  # fail before building when no weights are known

        def build(**model_kwargs):
            model_kwargs = _timm_kwargs(kind, model_kwargs)
            model = create_classifier(size, **model_kwargs) if kind == "classifier" else create_pretrainer(size, **model_kwargs)
            if pretrained:  # loaded here, before timm wraps the model for features_only
                load_pretrained_weights(model, cfg, key=key, cache_dir=cache_dir)
            return model

        # timm applies the pretrained_cfg (num_classes, in_chans), features_only (FeatureGetterNet over
        # forward_intermediates) and sets model.pretrained_cfg; the weights are loaded by `build` above.
        return build_model_with_cfg(build, name, False, pretrained_cfg=cfg,
                                    feature_cfg=dict(feature_cls="getter", out_indices=3), **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"ARM-{size[0].upper()} {'classifier' if kind == 'classifier' else 'pretraining model'} (armvision)."
    return entry


def _default_cfgs() -> Dict[str, Dict[str, Any]]:
    return {timm_name(size, kind): pretrained_cfg(size, kind) for size in SIZES for kind in ("classifier", "pretrainer")}


default_cfgs: Dict[str, Any] = {}  # filled by register_timm: timm's register_model reads this module attribute
ENTRYPOINTS: Dict[str, Any] = {}


def register_timm() -> bool:
    """Register arm_<size> (classifier) and arm_<size>_pretrain with timm, with their pretrained_cfgs, through timm's
    public API (generate_default_cfgs, register_model, is_model). Returns False without timm."""
    try:
        from timm.models import generate_default_cfgs, is_model, register_model
    except ImportError:
        return False
    default_cfgs.update(generate_default_cfgs(_default_cfgs()))
    for size in SIZES:
        for kind in ("classifier", "pretrainer"):
            fn = _timm_entry(size, kind)
            ENTRYPOINTS[fn.__name__] = fn
            globals()[fn.__name__] = fn
            if not is_model(fn.__name__):
                register_model(fn)
    return True
