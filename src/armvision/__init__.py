"""armvision: autoregressive pretraining of Vision Mamba (ARM), from pretraining to finetuning and evaluation.

    import armvision
    model = armvision.create_classifier("base", num_classes=1000)
    armvision.load_checkpoint(model, "arm_base_finetuned.pth", key="model_ema")
    logits = model(images)
    labels = armvision.predict("runs/ft/checkpoint-best.pth", ["cat.jpg", "photos/"])   # top-5 class names
"""
from . import env as _env

_env.huge_pages_for_torch()  # before torch is imported: torch reads its switch once (see armvision.env)
_env.reuse_freed_memory()  # glibc keeps freed buffers for reuse instead of unmapping them (see armvision.env)

from .version import __version__  # noqa: E402

from .models import (  # noqa: E402
    ARMClassifier, ARMPretrainer, MAEPretrainer, build_model, create_classifier, create_mae, create_pretrainer,
    from_pretrained, load_checkpoint, load_model, push_to_hub, save_pretrained)
from .deploy import Predictor, export, predict  # noqa: E402

__all__ = [
    "__version__", "ARMClassifier", "ARMPretrainer", "MAEPretrainer", "build_model", "create_classifier", "create_mae",
    "create_pretrainer", "export", "predict", "Predictor",
    "from_pretrained", "load_checkpoint", "load_model", "push_to_hub", "save_pretrained",
]
