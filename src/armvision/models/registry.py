"""The model families in one table, and armvision's timm family.

- `FAMILIES`: the model class each config `kind` builds. Checkpoint loading is handed this table (`checkpoint.py`
  takes it as an argument); no model module registers itself.
- Factories: `create_pretrainer` (the official pretraining weights on request), `create_classifier`, `build_model`.
- Loaders bound to FAMILIES: `load_checkpoint`, `load_model`, `from_pretrained`, `infer_config`, `state_dict_kind`.
- timm: the pretrained configs of the official weights in one `generate_default_cfgs` table (`default_cfgs`), and one
  plain entry point per size under timm's `@register_model` (`arm_tiny` ... `arm_huge`, ARM classifiers). timm files
  them under this module's name: `timm.list_models(module="registry")`.

Pretraining weights the timm way: as `vit_base_patch16_224.mae` is a ViT holding MAE's encoder weights, the tag
`arm_base.arm_in1k` is the ARM-B classifier backbone holding ARM's pretraining weights, converted as the reference
finetuning does (`checkpoint_filter_fn`), with no head (num_classes=0); `arm_base.arm_in1k_ft_in1k` holds the
finetuned weights. The pretrainer itself (encoder + decoder, its forward returns the loss) is not a timm model: it
is `create_pretrainer(size, pretrained=True)`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

from timm.models import (build_model_with_cfg, generate_default_cfgs, register_model, register_notrace_function,
                         register_notrace_module, resolve_pretrained_cfg)
from torch import Tensor, nn

from ..constants import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError
from ..nn import MambaMixer
from ..nn.layers import image_grid, run_mixer
from . import checkpoint
from .arm import ARMPretrainer
from .checkpoint import LoadReport, PathOrDict, read_checkpoint, select_state_dict
from .classifier import ARMClassifier, pos_embed_for_grid
from .config import BackboneConfig, config_from_dict, make_config
from .contrastive import ContrastivePretrainer
from .hub import hub_download, pretrained_source
from .mae import MAEPretrainer

log = logging.getLogger("armvision")

FAMILIES: Dict[str, Any] = {
    "pretrainer": ARMPretrainer,
    "classifier": ARMClassifier,
    "mae": MAEPretrainer,
    "contrastive": ContrastivePretrainer,
}

# torch.fx leaves for timm's tracers (each is also torch.fx.wrap'ed where it is defined, for plain
# torch.fx.symbolic_trace): the mixer (its scan backend is chosen by device at call time), the image-shape checks,
# and the position table that depends on the input size.
register_notrace_module(MambaMixer)
register_notrace_function(run_mixer)
register_notrace_function(image_grid)
register_notrace_function(pos_embed_for_grid)


# ---- factories ---------------------------------------------------------------------------------------------------
def create_pretrainer(size: str = "base", pretrained: bool = False, *, checkpoint_key: str = "model",
                      pretrained_cfg_overlay: Optional[Mapping[str, Any]] = None, cache_dir=None,
                      **overrides: Any) -> ARMPretrainer:
    """ARM pretraining model; the reference geometry (192 px, 4x4-patch clusters, row order) by default.
    pretrained=True loads the official pretraining weights of `size` (those of the timm tag `arm_<size>.arm_in1k`)
    from the Hugging Face Hub; pretrained_cfg_overlay=dict(file=PATH) (or hf_hub_id=..., hf_hub_filename=...) points
    elsewhere, as in timm."""
    model = ARMPretrainer(make_config("pretrainer", size, **overrides))
    if pretrained:
        official = default_cfgs.get(f"arm_{size}")
        tagged = official.cfgs.get(PRETRAINING_TAG) if official else None
        cfg = dict(tagged.to_dict() if tagged else {}, architecture=f"the {size} pretrainer")
        cfg.update(pretrained_cfg_overlay or {})
        load_pretrained_weights(model, cfg, key=checkpoint_key, cache_dir=cache_dir)
    return model


def create_classifier(size: str = "base", **overrides: Any) -> ARMClassifier:
    """ARM classifier (4-direction mixers, middle cls token); `overrides` are ClassifierConfig fields (defaults:
    1000 classes, 224 px, cls-token pooling). With official weights: `timm.create_model("arm_base", pretrained=True)`."""
    return ARMClassifier(make_config("classifier", size, **overrides))


def build_model(config) -> nn.Module:
    """Model from a config dataclass or its `asdict` form (with "kind")."""
    if isinstance(config, dict):
        config = config_from_dict(BackboneConfig, config, "model config")
    return FAMILIES[config.kind](config)


# ---- loading, over the families ---------------------------------------------------------------------------------
def state_dict_kind(sd: Mapping[str, Tensor]) -> str:
    """Which family wrote a state dict: "pretrainer", "classifier", "mae", "contrastive", or "backbone"."""
    return checkpoint.state_dict_kind(sd, FAMILIES)


def infer_config(sd: Mapping[str, Tensor], args: Any = None) -> Dict[str, Any]:
    """Model config (with "kind") read off a state dict's shapes (`checkpoint.infer_config`)."""
    return checkpoint.infer_config(sd, FAMILIES, args)


def load_checkpoint(model: nn.Module, source: PathOrDict, key: str = "model", strict: bool = True,
                    exclude: Tuple[str, ...] = ()) -> LoadReport:
    """Weights from a path, folder, .safetensors or dict into `model`, adapted by the model's checkpoint filter; the
    load report says what was converted, resized, missing or skipped (`checkpoint.load_checkpoint`)."""
    return checkpoint.load_checkpoint(model, source, FAMILIES, key=key, strict=strict, exclude=exclude)


def load_model(source: PathOrDict, key: str = "model", strict: bool = True, where: Optional[str] = None,
               **overrides: Any) -> Tuple[nn.Module, LoadReport]:
    """The model a checkpoint describes, built and loaded -> (model, load report), its class names in
    pretrained_cfg["label_names"] (`checkpoint.load_model`; `where`: the file a dict `source` was read from)."""
    return checkpoint.load_model(source, FAMILIES, key=key, strict=strict, where=where, **overrides)


def from_pretrained(source, filename: Optional[str] = None, revision: Optional[str] = None, cache_dir=None,
                    key: str = "model", token: Optional[str] = None, **overrides: Any) -> nn.Module:
    """A model from a save_pretrained folder, any checkpoint, or "hf-hub:owner/name[@revision]" (with `filename`
    for a single file such as a reference .pth) (`checkpoint.from_pretrained`)."""
    return checkpoint.from_pretrained(source, FAMILIES, filename=filename, revision=revision, cache_dir=cache_dir,
                                      key=key, token=token, **overrides)


def load_pretrained_weights(model: nn.Module, cfg: Mapping[str, Any], key: str = "model", cache_dir=None) -> LoadReport:
    """Weights named by a timm pretrained_cfg (local `file`, or `hf_hub_id` [+ '@revision'] + `hf_hub_filename`
    through huggingface_hub's cache) into `model`, by armvision's safe loader. As in timm: a head of another size
    (or none, num_classes=0) is not loaded and the model keeps its new one, named in the report; a patch embedding
    for other input channels is adapted (`in_chans`). The report is logged (logger "armvision") and returned."""
    src = pretrained_source(cfg)
    path = src["file"] if "file" in src else hub_download(src["repo_id"], src["filename"], src["revision"], cache_dir)
    sd = select_state_dict(read_checkpoint(path), key, str(path))
    name = cfg.get("classifier") or "head"
    head, saved = getattr(model, name, None), sd.get(f"{name}.weight")
    new_head = None
    if saved is not None and not (isinstance(head, nn.Linear) and head.weight.shape == saved.shape):
        n = getattr(model, "num_classes", 0)
        new_head = (f"{name} re-initialised: the checkpoint's is for {saved.shape[0]} classes, the model has "
                    + (f"{n}" if n else "none (num_classes=0)"))
        sd = {k: v for k, v in sd.items() if not k.startswith(f"{name}.")}
    report = load_checkpoint(model, {key: sd}, key=key, exclude=(f"{name}.",) if new_head else ())
    if new_head:
        report.converted.append(new_head)
    log.info("%s: %s", cfg.get("architecture") or type(model).__name__, report)
    return report


# ---- timm --------------------------------------------------------------------------------------------------------
OFFICIAL_REPO = "OliverRen/ARM"  # the paper's weights; file names assumed, overridable by pretrained_cfg_overlay
PRETRAINING_TAG = "arm_in1k"  # ARM pretraining on ImageNet-1k (the tag of the pretraining weights)


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    """One pretrained_cfg: the reference's evaluation recipe (224 px, bicubic, crop 0.875, ImageNet mean/std)."""
    return {**dict(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=DEFAULT_CROP_PCT, crop_mode="center",
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=1000, first_conv="patch_embed.proj",
                   classifier="head", license="apache-2.0", paper_name="Autoregressive Pretraining with Mamba in Vision",
                   paper_ids="arXiv:2406.07537", origin_url="https://github.com/OliverRensu/ARM"), **kwargs}


def _finetuned(size: str) -> Dict[str, Any]:
    return _cfg(hf_hub_id=OFFICIAL_REPO, hf_hub_filename=f"arm_{size}_finetuned.pth",
                description=f"ARM-{size[0].upper()}, pretrained with ARM and finetuned on ImageNet-1k")


def _pretraining(size: str) -> Dict[str, Any]:
    return _cfg(hf_hub_id=OFFICIAL_REPO, hf_hub_filename=f"arm_{size}_pretrain.pth", num_classes=0,
                description=f"ARM-{size[0].upper()} encoder after ARM pretraining on ImageNet-1k (192 px), converted "
                            "as the reference finetuning does (directions copied, decoder dropped); no head")


# The first tag of a model is its default (timm's convention): the finetuned classifier.
default_cfgs = generate_default_cfgs({
    "arm_tiny": _cfg(description="ARM-T classifier (no official weights)"),
    "arm_small": _cfg(description="ARM-S classifier (no official weights)"),
    "arm_base.arm_in1k_ft_in1k": _finetuned("base"),
    "arm_base.arm_in1k": _pretraining("base"),
    "arm_large.arm_in1k_ft_in1k": _finetuned("large"),
    "arm_large.arm_in1k": _pretraining("large"),
    "arm_huge.arm_in1k_ft_in1k": _finetuned("huge"),
    "arm_huge.arm_in1k": _pretraining("huge"),
})


def _classifier_kwargs(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Model kwargs as timm passes them -> ClassifierConfig fields: global_pool "token"/"avg" -> bool; timm's
    train.py's drop_rate (no dropout before the head here) must be 0."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if kwargs.pop("drop_rate", 0.0):
        raise ConfigError("ARM classifiers have no dropout before the head: drop_rate must be 0 (use drop_path_rate)")
    gp = kwargs.pop("global_pool", None)
    if gp is not None:
        if gp not in ("avg", "token", True, False):
            raise ConfigError(f"global_pool must be 'token' or 'avg' for ARM classifiers, got {gp!r}")
        kwargs["global_pool"] = gp in ("avg", True)
    return kwargs


def _create_arm(variant: str, size: str, pretrained: bool = False, **kwargs: Any) -> ARMClassifier:
    """An ARM classifier through timm's build_model_with_cfg (pretrained_cfg, num_classes / in_chans defaults,
    features_only by `forward_intermediates`); the weights go through armvision's loader (`load_pretrained_weights`:
    safe unpickling, reference checkpoints converted), `checkpoint_key` and `cache_dir` as in timm."""
    key = kwargs.pop("checkpoint_key", "model")
    cache_dir = kwargs.pop("cache_dir", None)
    cfg = resolve_pretrained_cfg(variant, kwargs.pop("pretrained_cfg", None),
                                 kwargs.pop("pretrained_cfg_overlay", None)).to_dict()
    if pretrained:
        pretrained_source(cfg)  # fail before building when no weights are known

    def build(**model_kwargs: Any) -> ARMClassifier:
        model = ARMClassifier(make_config("classifier", size, **_classifier_kwargs(model_kwargs)))
        if pretrained:  # loaded here, before timm wraps the model for features_only
            load_pretrained_weights(model, cfg, key=key, cache_dir=cache_dir)
        return model

    return build_model_with_cfg(build, variant, False, pretrained_cfg=cfg,
                                feature_cfg=dict(feature_cls="getter", out_indices=3), **kwargs)


@register_model
def arm_tiny(pretrained: bool = False, **kwargs: Any) -> ARMClassifier:
    """ARM-T classifier: width 192, depth 12 (no official weights)."""
    return _create_arm("arm_tiny", "tiny", pretrained, **kwargs)


@register_model
def arm_small(pretrained: bool = False, **kwargs: Any) -> ARMClassifier:
    """ARM-S classifier: width 384, depth 12 (no official weights)."""
    return _create_arm("arm_small", "small", pretrained, **kwargs)


@register_model
def arm_base(pretrained: bool = False, **kwargs: Any) -> ARMClassifier:
    """ARM-B classifier: width 768, depth 12; tags arm_in1k_ft_in1k (finetuned, default), arm_in1k (pretraining)."""
    return _create_arm("arm_base", "base", pretrained, **kwargs)


@register_model
def arm_large(pretrained: bool = False, **kwargs: Any) -> ARMClassifier:
    """ARM-L classifier: width 1024, depth 24; tags arm_in1k_ft_in1k (finetuned, default), arm_in1k (pretraining)."""
    return _create_arm("arm_large", "large", pretrained, **kwargs)


@register_model
def arm_huge(pretrained: bool = False, **kwargs: Any) -> ARMClassifier:
    """ARM-H classifier: width 1536, depth 24; tags arm_in1k_ft_in1k (finetuned, default), arm_in1k (pretraining)."""
    return _create_arm("arm_huge", "huge", pretrained, **kwargs)
