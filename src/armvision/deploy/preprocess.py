"""A model's own input transform, as a small record that travels with it: resize the short side to size / crop_pct
(bicubic), center-crop the model's size, normalise with the mean and std it was trained with. Read from a training
checkpoint's config (finetuning's --mean, --std, --crop-pct), ImageNet's values otherwise; written into exported ONNX
files (metadata `armvision_preprocess`, JSON) so that a prediction from the ONNX file sees the same pixels."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Optional

from ..constants import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from ..errors import CheckpointError

METADATA_KEY = "armvision_preprocess"


@dataclass
class Preprocess:
    img_size: tuple[int, int]
    crop_pct: float = DEFAULT_CROP_PCT
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    interpolation: str = "bicubic"

    def transform(self) -> Callable:
        """PIL image -> (3, H, W) float tensor, as evaluation sees it."""
        from ..data import eval_transform

        h, w = self.img_size
        if h == w:
            return eval_transform(h, self.crop_pct, self.mean, self.std)
        from torchvision import transforms as T
        from torchvision.transforms import InterpolationMode

        return T.Compose([T.Resize((h, w), interpolation=InterpolationMode.BICUBIC), T.ToTensor(),
                          T.Normalize(self.mean, self.std)])

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "img_size": list(self.img_size)})

    @classmethod
    def from_json(cls, text: str, where: str) -> "Preprocess":
        try:
            values = json.loads(text)
            return cls(img_size=tuple(int(v) for v in values["img_size"]), crop_pct=float(values["crop_pct"]),
                       mean=[float(v) for v in values["mean"]], std=[float(v) for v in values["std"]],
                       interpolation=str(values.get("interpolation", "bicubic")))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{where}: metadata {METADATA_KEY} is not a valid transform ({e})") from None


def preprocess_of(model: Any, ckpt: Optional[Mapping[str, Any]] = None) -> Preprocess:
    """The transform of `model`: its image size, and the mean / std / crop_pct of the training config that the
    checkpoint dict `ckpt` holds (ImageNet's and the default crop otherwise)."""
    cfg = ckpt.get("config") if isinstance(ckpt, Mapping) else None
    cfg = cfg if isinstance(cfg, Mapping) else {}
    return Preprocess(tuple(model.config.img_size), float(cfg.get("crop_pct", DEFAULT_CROP_PCT)),
                      [float(v) for v in cfg.get("mean", IMAGENET_MEAN)],
                      [float(v) for v in cfg.get("std", IMAGENET_STD)])
