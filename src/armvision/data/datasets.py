"""Datasets: an ImageFolder that skips bad files, the embedded digits default, and per-sample seeded augmentation.

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

import functools
import logging
import multiprocessing as mp
import os
import random
import threading
import warnings
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
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb threshold (about 9459 x 9459)
STRICT_THREADS = 4  # --strict-data decodes with at most this many threads ...
STRICT_PIXEL_BUDGET = 64_000_000  # ... and at most this many pixels in flight (about 200 MB of RGB)


class UnusableImage(Exception):
    """An image that opens but cannot be used (too many pixels, a pixel format without an RGB meaning)."""


def _pixel_check(im: Image.Image, max_pixels: Optional[int]) -> None:
    w, h = im.size
    if w < 1 or h < 1:
        raise UnusableImage(f"invalid size {im.size}")
    if max_pixels and w * h > max_pixels:
        raise UnusableImage(f"{w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,} "
                            "(raise it with --max-image-pixels)")


def to_rgb(im: Image.Image) -> Image.Image:
    """An 8-bit RGB image of `im`, scaling wide grey formats instead of clipping them.

    Pillow's own convert("RGB") clips 16-bit grey ("I;16", "I") at 255, so a 16-bit PNG turns almost white; here
    16-bit values are scaled by 255/65535 (and 32-bit integers by their own range when it exceeds 16 bits).
    Float images ("F") have no agreed range and are refused.
    """
    mode = im.mode
    if mode in ("RGB",):
        return im
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
            lo, hi = a.min(), a.max()
            a, top = a - lo, max(1.0, hi - lo)
        grey = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        raise UnusableImage("floating-point pixels (mode F) have no standard range; convert the file to 8-bit")
    return im.convert("RGB")


def load_rgb(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, check the pixel count against `max_pixels` (from the header, before decoding), decode, to RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies, named per file
        with Image.open(path) as im:
            _pixel_check(im, max_pixels)
            im.load()
            return to_rgb(im)


def _allow_pixels(max_pixels: Optional[int]) -> None:
    """Let Pillow open images up to our limit (it refuses above twice its own threshold)."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


class _PixelBudget:
    """A counting semaphore in pixels: at most `total` pixels decoded at once (one big image may exceed it alone)."""

    def __init__(self, total: int):
        self.total, self.used, self.cond = total, 0, threading.Condition()

    def acquire(self, n: int) -> int:
        n = min(n, self.total)
        with self.cond:
            self.cond.wait_for(lambda: self.used + n <= self.total)
            self.used += n
        return n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


def _check_image(path: str, full: bool, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                 budget: Optional[_PixelBudget] = None) -> Optional[str]:
    """Return why `path` is unusable, or None. `full` decodes the pixels, otherwise only the header is read."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _pixel_check(im, max_pixels)
                if im.mode == "F":
                    to_rgb(im)
                if full:
                    n = budget.acquire(im.size[0] * im.size[1]) if budget is not None else 0
                    try:
                        im.load()
                        to_rgb(im)
                    finally:
                        if budget is not None:
                            budget.release(n)
    except UnusableImage as e:
        return str(e)
    except Exception as e:  # PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"
    return None


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


class SafeImageFolder(ImageFolder):
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
        _allow_pixels(max_pixels)

        def accept(path: str) -> bool:
            if os.path.basename(path).startswith("."):
                return False
            if not path.lower().endswith(IMG_EXTENSIONS):
                self.skipped.append((path, "not an image file extension"))
                return False
            return True

        self._accept = accept
        try:
            super().__init__(str(root), transform=transform, loader=self._load, allow_empty=True)
        except FileNotFoundError:
            raise DataError(f"data folder {root} has no class sub-folders; put the images of each class in "
                            f"{root}/<class name>/") from None
        paths = [p for p, _ in self.samples]
        if strict:  # full decodes: few threads, bounded pixels in flight
            budget = _PixelBudget(max(STRICT_PIXEL_BUDGET, max_pixels or 0) if max_pixels else STRICT_PIXEL_BUDGET)
            threads = max(1, min(check_threads, STRICT_THREADS, os.cpu_count() or 1))
            check = functools.partial(_check_image, full=True, max_pixels=max_pixels, budget=budget)
        else:
            threads = max(1, check_threads)
            check = functools.partial(_check_image, full=False, max_pixels=max_pixels)
        with ThreadPoolExecutor(threads) as pool:
            reasons = list(pool.map(check, paths))
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
        self._failed = mp.Array("b", len(self.samples), lock=False)  # per sample: already failed (and warned)

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        samples, skipped = scan_folder(directory, class_to_idx, self._accept)
        self.skipped += skipped
        return samples

    def _load(self, path: str) -> Image.Image:
        return load_rgb(path, self.max_pixels)

    @property
    def load_failures(self) -> int:
        return int(self._failures.value)

    def __getitem__(self, index: int):
        n = len(self.samples)
        for attempt in range(n):
            j = (index + attempt) % n
            if self._failed[j]:
                continue  # failed before (and was named then): go straight to the next image
            path, target = self.samples[j]
            try:
                img = self.loader(path)
                break
            except Exception as e:
                with self._failures.get_lock():
                    first = not self._failed[j]
                    self._failed[j] = 1
                    if first:
                        self._failures.value += 1
                if first:
                    log.warning("skipping unreadable image %s (%s: %s); using the next image", path,
                                type(e).__name__, e)
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
    # resources/digits.npz: the UCI optical digits as scikit-learn bundles them (images (1797, 8, 8) uint8 in 0..16,
    # target), with the split sklearn's train_test_split(test_size=300, stratify=target, random_state=0) gave
    from importlib import resources

    with resources.files("armvision.data").joinpath("resources/digits.npz").open("rb") as f:
        d = dict(np.load(f))
    imgs = np.round(d["images"] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im, "L").resize((img_size, img_size), Image.BICUBIC))
                    for im in imgs])  # (1797, S, S)
    target = d["target"].astype(np.int64)
    tr, va = d["train_index"].astype(np.int64), d["val_index"].astype(np.int64)
    assert len(va) == DIGITS_VAL_SIZE
    return big[tr], target[tr], big[va], target[va]


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
                  strict: bool = False, num_threads: int = 16, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
                  ) -> Dataset:
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
    return SafeImageFolder(sub, transform=transform, strict=strict, check_threads=num_threads, max_pixels=max_pixels)


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
