"""A reference (or any loadable) checkpoint -> armvision's safetensors + config.json directory (`armvision convert`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from torch import nn

from .checkpoint import LoadReport, save_pretrained
from .registry import load_model


def convert_checkpoint(checkpoint: Union[str, os.PathLike], output: Union[str, os.PathLike], ema: bool = False,
                       kind: Optional[str] = None, num_classes: Optional[int] = None, img_size: Optional[int] = None,
                       global_pool: bool = False) -> tuple[nn.Module, LoadReport, Path]:
    """Load `checkpoint` (its EMA weights with `ema`), build it as `kind` ("pretrainer", "classifier", "mae"; default:
    what the checkpoint is) at `img_size`, save it with `save_pretrained` -> (model, load report, output folder).
    The class names a finetuning checkpoint holds ("label_names", when they fit the head) go into config.json and the
    model card."""
    overrides: dict[str, Any] = {}
    if kind:
        overrides["kind"] = kind
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if img_size is not None:
        overrides["img_size"] = img_size
    if global_pool:
        overrides["global_pool"] = True
    model, report = load_model(str(checkpoint), key="model_ema" if ema else "model", **overrides)
    return model, report, Path(save_pretrained(model, output))  # label_names: the model's, as load_model kept them
