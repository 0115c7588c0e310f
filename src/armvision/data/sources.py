"""What `--data` can be, and the dataset of one split of it:

- nothing (or "embedded:digits"): the embedded digits;
- "embedded:mnist5k": 5,000 MNIST digits shipped with the package (mnist5k.py);
- DIR with train/ and val/ ImageFolders (one sub-folder per class);
- webdataset tar shards: DIR/train/*.tar (or DIR/train-*.tar) and the same for val, or a shard pattern
  ("shards/train-{000..099}.tar", "shards/*.tar") for the training images alone (streams.py);
- a Hugging Face dataset saved on disk (datasets' save_to_disk: DIR/dataset_dict.json or DIR/state.json; hf.py);
- for pretraining, which needs no labels, also a folder of images without class folders (searched recursively)
  or a text file listing images one per line (unlabelled.py); DIR/train and DIR/val may be such folders too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from torch.utils.data import Dataset

from ..errors import DataError
from .datasets import EMBEDDED_NAME, SafeImageFolder, embedded_digits
from .hf import HFImages, has_split, is_hf_dataset
from .images import DEFAULT_MAX_PIXELS
from .mnist5k import EMBEDDED_MNIST, EmbeddedMNIST
from .streams import TarShards, find_shards
from .unlabelled import ImageFiles, is_file_list

LAYOUTS = ("DIR/train and DIR/val with one sub-folder per class, webdataset shards (DIR/train/*.tar), or a Hugging "
           "Face dataset saved on disk")


def _has_class_folders(folder: Path) -> bool:
    return any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(folder))


def split_exists(data: Optional[str], split: str) -> bool:
    """Whether `data` has the split (the embedded digits have both; a flat folder or file list only train)."""
    if data is None or data in (EMBEDDED_NAME, EMBEDDED_MNIST):
        return True
    shards = find_shards(data, split)
    if shards is not None:
        return bool(shards)
    if is_hf_dataset(data):
        return has_split(data, split)
    if os.path.isdir(os.path.join(data, split)):
        return True
    return split == "train" and (os.path.isdir(data) or is_file_list(data))


def build_dataset(data: Optional[str], split: str, transform: Optional[Callable],
                  img_size: int | tuple[int, int] = 32,
                  strict: bool = False, num_threads: int = 16, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                  labelled: bool = True, train: Optional[bool] = None, seed: int = 0) -> Dataset:
    """Split `split` of `data` (see the module's docstring). `labelled=False` (pretraining) also takes folders
    without class folders and file lists; `train` (default: split == "train") makes a stream shuffle and repeat."""
    if data is None or data == EMBEDDED_NAME:
        return embedded_digits(split, img_size, transform)
    if data == EMBEDDED_MNIST:
        return EmbeddedMNIST(split, img_size, transform)
    shards = find_shards(data, split)
    if shards is not None:
        if not shards:
            raise DataError(f"--data {data}: no {split} shards ({data}/{split}/*.tar or {data}/{split}-*.tar)")
        return TarShards(shards, transform, labelled, train=split == "train" if train is None else train, seed=seed,
                         strict=strict, max_pixels=max_pixels)
    if is_hf_dataset(data):
        return HFImages(data, split, transform, labelled, strict, max_pixels)
    root = Path(data)
    if not labelled and is_file_list(root):
        if split != "train":
            raise DataError(f"--data {data} is a list of images: it is the training set only")
        return ImageFiles(root, transform, strict, num_threads, max_pixels)
    if not root.is_dir():
        raise DataError(f"--data {data}: folder does not exist; expected {LAYOUTS} (or omit --data to use the "
                        "embedded digits)")
    sub = root / split
    if not labelled and (not sub.is_dir() or not _has_class_folders(sub)):
        if sub.is_dir():
            return ImageFiles(sub, transform, strict, num_threads, max_pixels)
        if split == "train" and not (root / "val").is_dir():
            return ImageFiles(root, transform, strict, num_threads, max_pixels)  # a folder of images
    if not sub.is_dir():
        raise DataError(f"--data {data}: missing {sub}; expected {LAYOUTS}")
    return SafeImageFolder(sub, transform=transform, strict=strict, check_threads=num_threads, max_pixels=max_pixels)
