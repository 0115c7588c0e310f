"""Unlabelled images for pretraining: every image file under a folder (flat or nested, no class folders needed), or
the files a text list names. The same hygiene as the ImageFolder: unreadable files found by a header scan are
skipped and named (`strict`: decoded in full first, one error listing them), files that fail later are replaced by
the next image and named once, symbolic-link loops are cut and a file reached twice is used once."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import DataError
from .datasets import scan_folder
from .images import (DEFAULT_MAX_PIXELS, CountsLoadFailures, LoadFailures, allow_pixels, check_files,
                     image_file_filter, load_rgb, name_skipped)


def is_file_list(path: str | os.PathLike) -> bool:
    """A text file that lists images (one path per line), as opposed to an image or an archive."""
    p = Path(path)
    return p.is_file() and not p.name.lower().endswith((*IMG_EXTENSIONS, ".tar", ".arrow", ".parquet"))


def _read_list(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(image paths, skipped) of a file list: one path per line, relative to the list's folder unless absolute;
    blank lines and lines starting with # are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--data {path}: cannot read it as a list of image paths ({e})") from None
    found, skipped, seen = [], [], set()
    for n, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        p = os.path.normpath(entry if os.path.isabs(entry) else os.path.join(path.parent, entry))
        if not os.path.isfile(p):
            skipped.append((p, f"listed on line {n} of {path}, but no such file"))
        elif os.path.realpath(p) in seen:
            skipped.append((p, f"listed again on line {n}; used once"))
        else:
            seen.add(os.path.realpath(p))
            found.append(p)
    return found, skipped


class ImageFiles(CountsLoadFailures, Dataset):
    """Images of a folder (searched recursively) or of a file list, without labels: item i is (image, 0)."""

    def __init__(self, source: str | os.PathLike, transform: Optional[Callable] = None, strict: bool = False,
                 check_threads: int = 16, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        source = Path(source)
        self.root, self.transform, self.max_pixels = str(source), transform, max_pixels
        self.classes: list[str] = []
        allow_pixels(max_pixels)
        if source.is_dir():
            self.skipped: list[tuple[str, str]] = []
            samples, links = scan_folder(str(source), {"": 0}, image_file_filter(self.skipped))
            paths = [p for p, _ in samples]
            self.skipped += links
        elif source.is_file():
            paths, self.skipped = _read_list(source)
        else:
            raise DataError(f"--data {source}: no such folder or file list")
        reasons = check_files(paths, strict, max_pixels, check_threads)
        self.skipped += [(p, r) for p, r in zip(paths, reasons) if r is not None]
        self.paths = [p for p, r in zip(paths, reasons) if r is None]
        name_skipped(self.skipped, str(source), strict)
        if not self.paths:
            raise DataError(f"--data {source} holds no readable images (extensions {', '.join(IMG_EXTENSIONS)})")
        self.targets = [0] * len(self.paths)
        self.failures = LoadFailures(len(self.paths))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        _, img = self.failures.load(len(self.paths), index, lambda j: load_rgb(self.paths[j], self.max_pixels),
                                    lambda j: self.paths[j], self.root)
        return (self.transform(img) if self.transform is not None else img), 0

    def report(self) -> str:
        return (f"data {self.root}: {len(self.skipped)} file(s) skipped when scanning, "
                f"{self.load_failures} failed to decode while training")
