"""torch.hub entry points: ``torch.hub.load("owner/armvision", "arm_base", pretrained=True)``.

``arm_<size>`` is the timm model of the same name (an ARM classifier; keyword arguments are those of
``timm.create_model``: num_classes, img_size, in_chans, pretrained_cfg="arm_in1k" for the pretraining weights,
pretrained_cfg_overlay=dict(file=PATH), checkpoint_key="model_ema", features_only=True, ...).
``arm_<size>_pretrain`` is the ARM pretrainer (encoder + decoder; its forward returns the loss), built by
``armvision.create_pretrainer`` (keyword arguments: its config fields, pretrained_cfg_overlay, checkpoint_key).
``pretrained=True`` fetches the official weights through huggingface_hub (its cache and HF_HUB_OFFLINE apply) and
loads them with armvision's safe loader.
"""
import os
import sys

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]

try:
    import armvision  # noqa: F401  (installed)
except ImportError:  # a plain checkout (torch.hub's download or source="local"): the package lives in src/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    import armvision  # noqa: F401


def _timm(name, pretrained, **kwargs):
    import timm

    return timm.create_model(name, pretrained=pretrained, **kwargs)


def arm_tiny(pretrained=False, **kwargs):
    """ARM-T classifier (timm's arm_tiny)."""
    return _timm("arm_tiny", pretrained, **kwargs)


def arm_small(pretrained=False, **kwargs):
    """ARM-S classifier (timm's arm_small)."""
    return _timm("arm_small", pretrained, **kwargs)


def arm_base(pretrained=False, **kwargs):
    """ARM-B classifier (timm's arm_base; finetuned weights by default, pretrained_cfg="arm_in1k" for ARM's)."""
    return _timm("arm_base", pretrained, **kwargs)


def arm_large(pretrained=False, **kwargs):
    """ARM-L classifier (timm's arm_large)."""
    return _timm("arm_large", pretrained, **kwargs)


def arm_huge(pretrained=False, **kwargs):
    """ARM-H classifier (timm's arm_huge)."""
    return _timm("arm_huge", pretrained, **kwargs)


def arm_tiny_pretrain(pretrained=False, **kwargs):
    """ARM-T pretrainer (armvision.create_pretrainer("tiny"); no official weights)."""
    return armvision.create_pretrainer("tiny", pretrained, **kwargs)


def arm_small_pretrain(pretrained=False, **kwargs):
    """ARM-S pretrainer (armvision.create_pretrainer("small"); no official weights)."""
    return armvision.create_pretrainer("small", pretrained, **kwargs)


def arm_base_pretrain(pretrained=False, **kwargs):
    """ARM-B pretrainer (armvision.create_pretrainer("base")), official pretraining weights with pretrained=True."""
    return armvision.create_pretrainer("base", pretrained, **kwargs)


def arm_large_pretrain(pretrained=False, **kwargs):
    """ARM-L pretrainer (armvision.create_pretrainer("large")), official pretraining weights with pretrained=True."""
    return armvision.create_pretrainer("large", pretrained, **kwargs)


def arm_huge_pretrain(pretrained=False, **kwargs):
    """ARM-H pretrainer (armvision.create_pretrainer("huge")), official pretraining weights with pretrained=True."""
    return armvision.create_pretrainer("huge", pretrained, **kwargs)
