"""The embedded default dataset: scikit-learn's 1,797 real 8x8 digit images (shipped in resources/digits.npz),
upsampled to the model's image size, with a fixed stratified train / val split."""
from __future__ import annotations

import functools
from typing import Callable, Optional

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from ..fields import as_hw

EMBEDDED_NAME = "embedded:digits"
DIGITS_VAL_SIZE = 300  # fixed, stratified, seed 0: 1,497 train / 300 val


@functools.lru_cache(maxsize=4)
def _digits(hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rendered digits at (height, width): (train images (N, H, W) uint8, train labels, val images, val labels)."""
    # resources/digits.npz: the UCI optical digits as scikit-learn bundles them (images (1797, 8, 8) uint8 in 0..16,
    # target), with the split sklearn's train_test_split(test_size=300, stratify=target, random_state=0) gave
    from importlib import resources

    with resources.files("armvision.data").joinpath("resources/digits.npz").open("rb") as f:
        d = dict(np.load(f))
    imgs = np.round(d["images"] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im, "L").resize((hw[1], hw[0]), Image.BICUBIC))
                    for im in imgs])  # (1797, H, W)
    target = d["target"].astype(np.int64)
    tr, va = d["train_index"].astype(np.int64), d["val_index"].astype(np.int64)
    assert len(va) == DIGITS_VAL_SIZE
    return big[tr], target[tr], big[va], target[va]


class EmbeddedDigits(Dataset):
    """scikit-learn's 1,797 real 8x8 digit images, upsampled (bicubic) to `img_size` (one number, or height and
    width), as 3-channel PIL images."""

    def __init__(self, split: str = "train", img_size: int | tuple[int, int] = 32,
                 transform: Optional[Callable] = None):
        if split not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {split!r}")
        tr_x, tr_y, va_x, va_y = _digits(as_hw(img_size))
        self.images, labels = (tr_x, tr_y) if split == "train" else (va_x, va_y)
        self.targets = [int(t) for t in labels]
        self.classes = [str(i) for i in range(10)]
        self.transform = transform
        self.root = EMBEDDED_NAME + f"/{split}"
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        img = Image.fromarray(self.images[index], "L").convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]

    def report(self) -> str:
        return f"data {self.root}: {len(self)} embedded images, none skipped"


def embedded_digits(split: str = "train", img_size: int | tuple[int, int] = 32,
                    transform: Optional[Callable] = None) -> EmbeddedDigits:
    """The embedded default dataset (used when no --data folder is given)."""
    return EmbeddedDigits(split, img_size, transform)
