"""Data: what `--data` can be (sources.py: ImageFolders, folders and lists of unlabelled images, webdataset shards,
Hugging Face datasets saved on disk, the embedded digits default, 5,000 shipped MNIST digits), the checks every
image goes through (images.py), and the reference transforms."""
from .datasets import (
    EMBEDDED_NAME,
    AugmentSeeded,
    SafeImageFolder,
    embedded_digits,
)
from .hf import HFImages
from .mnist5k import EMBEDDED_MNIST, EmbeddedMNIST, mnist5k_arrays, mnist5k_split
from .sources import build_dataset, split_exists
from .streams import TarShards
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, TwoViews, contrastive_transform, eval_transform,
                         finetune_transform, pretrain_transform)
from .unlabelled import ImageFiles

__all__ = [
    "EMBEDDED_NAME",
    "AugmentSeeded",
    "SafeImageFolder",
    "ImageFiles",
    "TarShards",
    "HFImages",
    "build_dataset",
    "split_exists",
    "embedded_digits",
    "EMBEDDED_MNIST",
    "EmbeddedMNIST",
    "mnist5k_arrays",
    "mnist5k_split",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "eval_transform",
    "finetune_transform",
    "pretrain_transform",
    "TwoViews",
    "contrastive_transform",
]
