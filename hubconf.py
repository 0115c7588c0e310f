"""torch.hub entry points: ``torch.hub.load("owner/armvision", "arm_base", pretrained=True)``.

Each entry is the timm model of the same name (``arm_<size>`` classifier, ``arm_<size>_pretrain``), built by
armvision; ``pretrained=True`` fetches the official weights through huggingface_hub (its cache and HF_HUB_OFFLINE
apply) and loads them with armvision's safe loader. Keyword arguments are those of ``timm.create_model``
(num_classes, img_size, pretrained_cfg_overlay=dict(file=PATH), checkpoint_key="model_ema", features_only=True, ...).
"""
import os
import sys

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]

try:
    import armvision  # noqa: F401  (installed)
except ImportError:  # a plain checkout (torch.hub's download or source="local"): the package lives in src/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    import armvision  # noqa: F401

from armvision.models.config import SIZES as _SIZES


def _entry(name):
    def load(pretrained=False, **kwargs):
        import timm

        return timm.create_model(name, pretrained=pretrained, **kwargs)

    load.__name__ = name
    load.__doc__ = f"timm.create_model({name!r}, pretrained=..., **kwargs) from armvision."
    return load


for _size in _SIZES:
    for _name in (f"arm_{_size}", f"arm_{_size}_pretrain"):
        globals()[_name] = _entry(_name)
del _size, _name
