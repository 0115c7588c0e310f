"""Datasets: an ImageFolder that skips bad files, and per-sample seeded augmentation (the embedded digits: digits.py).

Bad files (zero bytes, not an image, unreadable header, more pixels than `max_pixels`, a pixel format that cannot
be shown as RGB) are found when the folder is scanned and skipped with a warning naming each; files that only fail
when decoded (a corrupt JPEG body) are replaced by the next image at load time, with one warning per file, and
counted. `strict=True` fully decodes every file first (a few threads, with a bound on the pixels decoded at once)
and raises a DataError that lists the bad ones, before any training starts.

The folder walk follows symbolic links but never the same real folder twice (a link loop is named and cut), and
a file reached twice through links is used once (the duplicate is named). 16-bit and 32-bit grey images are scaled
to 8 bits (not clipped to white); float images are skipped with a reason.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import DataError
from .digits import EMBEDDED_NAME, embedded_digits  # noqa: F401
from .images import (DEFAULT_MAX_PIXELS, MAX_NAMED, STRICT_PIXEL_BUDGET, STRICT_THREADS,  # noqa: F401
                     CountsLoadFailures, LoadFailures, UnusableImage, allow_pixels, check_files, image_file_filter,
                     load_rgb, name_skipped, shown, to_rgb)

log = logging.getLogger(__name__)


def scan_folder(root: str, class_to_idx: dict[str, int], accept: Callable[[str], bool]
                ) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """(samples, skipped) of an ImageFolder root, following links but each real folder and real file once.

    A file reached both directly and through a link keeps its direct path (and class); the other paths are named
    as duplicates. A link to a folder already scanned (the root, a class folder, an ancestor) is named and cut."""
    skipped: list[tuple[str, str]] = []
    real_root = os.path.realpath(root)
    # the root and every class folder count as seen: a link back to them is a loop or a class inside another
    seen_dirs = {real_root} | {os.path.realpath(os.path.join(root, c)) for c in class_to_idx}
    found: list[tuple[str, int, str, bool]] = []  # path, class, real path, reached without links
    for cls in sorted(class_to_idx):
        stack = [os.path.join(root, cls)]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                skipped.append((folder, f"folder cannot be read ({e.strerror or e})"))
                continue
            subdirs = []
            for entry in entries:
                path = entry.path
                try:
                    is_dir = entry.is_dir()  # follows links
                except OSError:
                    is_dir = False
                if is_dir:
                    real = os.path.realpath(path)
                    if real in seen_dirs:
                        skipped.append((path, f"link to {real}, a folder already scanned (a symbolic-link loop "
                                              "or a second link to it); not followed"))
                        continue
                    seen_dirs.add(real)
                    subdirs.append(path)
                    continue
                if not accept(path):
                    continue
                if not os.path.exists(path):
                    skipped.append((path, "broken symbolic link"))
                    continue
                real = os.path.realpath(path)
                direct = real == os.path.join(real_root, os.path.relpath(path, root))
                found.append((path, class_to_idx[cls], real, direct))
            stack.extend(reversed(subdirs))
    owner: dict[str, str] = {}
    for path, _, real, direct in sorted(found, key=lambda f: not f[3]):  # direct paths claim their file first
        owner.setdefault(real, path)
    samples = []
    for path, idx, real, _ in found:
        if owner[real] == path:
            samples.append((path, idx))
        else:
            skipped.append((path, f"same file as {owner[real]} (through a link); used once"))
    return samples, skipped


class SafeImageFolder(CountsLoadFailures, ImageFolder):
    """torchvision ImageFolder that skips (or, with strict, rejects) unreadable images and reports them.

    `skipped` lists (path, reason) found when scanning; `load_failures` counts files that failed at decode time.
    """

    def __init__(self, root: str | os.PathLike, transform: Optional[Callable] = None, strict: bool = False,
                 check_threads: int = 16, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist; give a folder with one sub-folder per class")
        self.skipped: list[tuple[str, str]] = []
        self.max_pixels = max_pixels
        allow_pixels(max_pixels)

        self._accept = image_file_filter(self.skipped)
        try:
            super().__init__(str(root), transform=transform, loader=self._load, allow_empty=True)
        except FileNotFoundError:
            raise DataError(f"data folder {root} has no class sub-folders; put the images of each class in "
                            f"{root}/<class name>/") from None
        paths = [p for p, _ in self.samples]
        reasons = check_files(paths, strict, max_pixels, check_threads)
        keep = [s for s, r in zip(self.samples, reasons) if r is None]
        self.skipped += [(p, r) for p, r in zip(paths, reasons) if r is not None]
        self.samples = self.imgs = keep
        self.targets = [t for _, t in keep]
        name_skipped(self.skipped, str(root), strict)
        if not self.samples:
            raise DataError(f"data folder {root} contains no readable images "
                            f"(extensions {', '.join(IMG_EXTENSIONS)})")
        self._refuse_empty_classes(root)
        self.failures = LoadFailures(len(self.samples))  # shared with DataLoader workers (inherited at start)

    def _refuse_empty_classes(self, root: Path) -> None:
        """A class folder without a usable image would still be an output of the model (never seen in training):
        refused, named."""
        used = set(self.targets)
        empty = [c for c, i in self.class_to_idx.items() if i not in used]
        if empty:
            names = ", ".join(shown(c) for c in empty[:MAX_NAMED]) + (" ..." if len(empty) > MAX_NAMED else "")
            raise DataError(f"data folder {shown(str(root))}: {len(empty)} class folder(s) without a usable image "
                            f"({names}); add images, or remove the folder(s): each would be a class of the model")

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        samples, skipped = scan_folder(directory, class_to_idx, self._accept)
        self.skipped += skipped
        return samples

    def _load(self, path: str) -> Image.Image:
        return load_rgb(path, self.max_pixels)

    def __getitem__(self, index: int):
        j, img = self.failures.load(len(self.samples), index, lambda j: self.loader(self.samples[j][0]),
                                    lambda j: self.samples[j][0], str(self.root))
        if self.transform is not None:
            img = self.transform(img)
        return img, self.samples[j][1]

    def report(self) -> str:
        """One line: how many files were skipped at scan time and at load time."""
        return (f"data {self.root}: {len(self.skipped)} file(s) skipped when scanning, "
                f"{self.load_failures} failed to decode while training")


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
        return call_seeded([self.seed, self.epoch, int(index)], self.dataset.__getitem__, index)


def call_seeded(entropy: list[int], fn: Callable, *args):
    """fn(*args) with torch's CPU generator, `random` and numpy seeded from `entropy`; the caller's RNG states are
    restored afterwards (CUDA RNG streams are left alone)."""
    s = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    torch.default_generator.manual_seed(s)
    random.seed(s)
    np.random.seed(s)
    try:
        return fn(*args)
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])
