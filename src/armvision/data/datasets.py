"""Datasets: an ImageFolder that skips bad files, the embedded digits default, and per-sample seeded augmentation.

Bad files (zero bytes, not an image, unreadable header) are found when the folder is scanned and skipped with a
warning naming each; files that only fail when decoded (a corrupt JPEG body) are replaced by the next image at load
time, again with a warning, and counted. `strict=True` fully decodes every file first and raises a DataError that
lists the bad ones, before any training starts.
"""
from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import DataError

log = logging.getLogger(__name__)
EMBEDDED_NAME = "embedded:digits"
DIGITS_VAL_SIZE = 300  # fixed, stratified, seed 0: 1,497 train / 300 val
_MAX_NAMED = 20  # warnings name at most this many files, then give a count


def _check_image(path: str, full: bool) -> Optional[str]:
    """Return why `path` is unusable, or None. `full` decodes the pixels, otherwise only the header is read."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            if full:
                im.convert("RGB").load()
            elif im.size[0] < 1 or im.size[1] < 1:
                return f"invalid size {im.size}"
    except Exception as e:  # PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"
    return None


class SafeImageFolder(ImageFolder):
    """torchvision ImageFolder that skips (or, with strict, rejects) unreadable images and reports them.

    `skipped` lists (path, reason) found when scanning; `load_failures` counts files that failed at decode time.
    """

    def __init__(self, root: str | os.PathLike, transform: Optional[Callable] = None, strict: bool = False,
                 check_threads: int = 16):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist; give a folder with one sub-folder per class")
        self.skipped: list[tuple[str, str]] = []

        def accept(path: str) -> bool:
            if os.path.basename(path).startswith("."):
                return False
            if not path.lower().endswith(IMG_EXTENSIONS):
                self.skipped.append((path, "not an image file extension"))
                return False
            return True

        try:
            super().__init__(str(root), transform=transform, is_valid_file=accept, allow_empty=True)
        except FileNotFoundError:
            raise DataError(f"data folder {root} has no class sub-folders; put the images of each class in "
                            f"{root}/<class name>/") from None
        paths = [p for p, _ in self.samples]
        with ThreadPoolExecutor(max(1, check_threads)) as pool:
            reasons = list(pool.map(functools.partial(_check_image, full=strict), paths))
        keep = [s for s, r in zip(self.samples, reasons) if r is None]
        self.skipped += [(p, r) for p, r in zip(paths, reasons) if r is not None]
        self.samples = self.imgs = keep
        self.targets = [t for _, t in keep]
        if self.skipped:
            lines = [f"  {p}: {r}" for p, r in self.skipped[:_MAX_NAMED]]
            if len(self.skipped) > _MAX_NAMED:
                lines.append(f"  ... and {len(self.skipped) - _MAX_NAMED} more")
            if strict:
                raise DataError(f"{len(self.skipped)} unreadable file(s) in {root} (--strict-data):\n"
                                + "\n".join(lines) + "\nremove or fix them, or run without --strict-data to skip them")
            if os.environ.get("RANK", "0") == "0":  # every torchrun process scans; one of them tells
                log.warning("skipping %d unreadable file(s) in %s:\n%s", len(self.skipped), root, "\n".join(lines))
        if not self.samples:
            raise DataError(f"data folder {root} contains no readable images "
                            f"(extensions {', '.join(IMG_EXTENSIONS)})")
        self._failures = mp.Value("i", 0)  # shared with DataLoader workers (inherited at worker start)

    @property
    def load_failures(self) -> int:
        return int(self._failures.value)

    def __getitem__(self, index: int):
        for attempt in range(len(self.samples)):
            path, target = self.samples[(index + attempt) % len(self.samples)]
            try:
                img = self.loader(path)
                break
            except Exception as e:
                with self._failures.get_lock():
                    self._failures.value += 1
                log.warning("skipping unreadable image %s (%s: %s); using the next image", path, type(e).__name__, e)
        else:
            raise DataError(f"no image of {self.root} could be decoded")
        if self.transform is not None:
            img = self.transform(img)
        return img, target

    def report(self) -> str:
        """One line: how many files were skipped at scan time and at load time."""
        return (f"data {self.root}: {len(self.skipped)} file(s) skipped when scanning, "
                f"{self.load_failures} failed to decode while training")


@functools.lru_cache(maxsize=4)
def _digits(img_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rendered digits: (train images (N, S, S) uint8, train labels, val images, val labels)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()  # (1797, 8, 8) floats in 0..16, bundled with scikit-learn (no download)
    imgs = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im, "L").resize((img_size, img_size), Image.BICUBIC))
                    for im in imgs])  # (1797, S, S)
    idx = np.arange(len(big))
    tr, va = train_test_split(idx, test_size=DIGITS_VAL_SIZE, stratify=d.target, random_state=0)
    return big[tr], d.target[tr], big[va], d.target[va]


class EmbeddedDigits(Dataset):
    """scikit-learn's 1,797 real 8x8 digit images, upsampled (bicubic) to `img_size`, as 3-channel PIL images."""

    def __init__(self, split: str = "train", img_size: int = 32, transform: Optional[Callable] = None):
        if split not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {split!r}")
        tr_x, tr_y, va_x, va_y = _digits(int(img_size))
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


def embedded_digits(split: str = "train", img_size: int = 32, transform: Optional[Callable] = None) -> EmbeddedDigits:
    """The embedded default dataset (used when no --data folder is given)."""
    return EmbeddedDigits(split, img_size, transform)


def build_dataset(data: Optional[str], split: str, transform: Optional[Callable], img_size: int = 32,
                  strict: bool = False, num_threads: int = 16) -> Dataset:
    """`data/split` as a SafeImageFolder, or the embedded digits when `data` is None or 'embedded:digits'."""
    if data is None or data == EMBEDDED_NAME:
        return embedded_digits(split, img_size, transform)
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"--data {data}: folder does not exist; expected {data}/train and {data}/val "
                        "with one sub-folder per class (or omit --data to use the embedded digits)")
    sub = root / split
    if not sub.is_dir():
        raise DataError(f"--data {data}: missing {sub}; expected {data}/train and {data}/val with one "
                        "sub-folder per class")
    return SafeImageFolder(sub, transform=transform, strict=strict, check_threads=num_threads)


class AugmentSeeded(Dataset):
    """Wraps a dataset so that sample i of epoch e draws its random augmentation from seed (seed, e, i).

    Augmentations then do not depend on worker count, rank or where a resumed run restarts, and the global RNGs
    of the calling process are left untouched (they are saved and restored around each sample).
    """

    def __init__(self, dataset: Dataset, seed: int = 0):
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name == "dataset":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int):
        s = int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])
        states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        torch.default_generator.manual_seed(s)  # the CPU generator only: CUDA RNG streams are left alone
        random.seed(s)
        np.random.seed(s)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(states[0])
            random.setstate(states[1])
            np.random.set_state(states[2])
