"""Datasets (ImageFolder with bad-file handling, the embedded digits default) and the reference transforms."""
from .datasets import (
    EMBEDDED_NAME,
    AugmentSeeded,
    SafeImageFolder,
    build_dataset,
    embedded_digits,
)
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, TwoViews, contrastive_transform, eval_transform,
                         finetune_transform, pretrain_transform)

__all__ = [
    "EMBEDDED_NAME",
    "AugmentSeeded",
    "SafeImageFolder",
    "build_dataset",
    "embedded_digits",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "eval_transform",
    "finetune_transform",
    "pretrain_transform",
    "TwoViews",
    "contrastive_transform",
]
