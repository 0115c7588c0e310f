"""A Hugging Face dataset saved on disk (`DatasetDict.save_to_disk` / `Dataset.save_to_disk`): `--data DIR`.

Read with `datasets.load_from_disk` (the optional extra `armvision[hf]`): the Arrow files are memory-mapped, so
an image is read from disk when it is used, never the whole set into memory, and any image can be reached by index.
The training loop's global batch order then shards it over processes (and DataLoader workers take whole batches of
it), exactly as an ImageFolder. Splits: "train", and "val" or "validation"; a single saved Dataset is the training
split. The image column is the first of feature type `Image` (or named image / img), the label column the first
`ClassLabel` (or named label / labels); class names are the ClassLabel's names.
Hygiene: images are decoded by our loader from their stored bytes (pixel limit from the header, 16-bit grey
scaled); one that fails is replaced by the next and named once; `strict` decodes them all first and lists the bad
ones in one error.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from torch.utils.data import Dataset

from ..errors import DataError
from .images import DEFAULT_MAX_PIXELS, CountsLoadFailures, LoadFailures, check_files, load_rgb, name_skipped

SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation", "valid")}


def is_hf_dataset(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by datasets' save_to_disk (a DatasetDict or a Dataset)."""
    p = Path(path)
    return p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())


def _load(path: str):
    try:
        import datasets
    except ImportError:
        raise DataError(f"--data {path} is a Hugging Face dataset saved on disk; reading it needs the datasets "
                        "package: pip install 'armvision[hf]'") from None
    try:
        return datasets, datasets.load_from_disk(path)
    except Exception as e:  # datasets raises its own types for broken folders
        raise DataError(f"--data {path}: cannot load the saved dataset ({type(e).__name__}: {e})") from None


def has_split(path: str, split: str) -> bool:
    """Whether the saved dataset at `path` has `split` (a single Dataset has only "train")."""
    if (Path(path) / "dataset_dict.json").is_file():
        import json

        names = json.loads((Path(path) / "dataset_dict.json").read_text()).get("splits", [])
        return any(n in names for n in SPLIT_NAMES.get(split, (split,)))
    return split == "train"


def _columns(datasets: Any, ds: Any, where: str) -> tuple[str, Optional[str]]:
    features = ds.features
    image = next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
    image = image or next((c for c in ("image", "img") if c in features), None)
    label = next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    label = label or next((c for c in ("label", "labels") if c in features), None)
    if image is None:
        raise DataError(f"--data {where}: no image column (a feature of type Image, or one named image / img); "
                        f"columns: {', '.join(features)}")
    return image, label


class HFImages(CountsLoadFailures, Dataset):
    """Split `split` of a saved Hugging Face dataset as (image, label) items (label 0 when `labelled` is False)."""

    def __init__(self, path: str | os.PathLike, split: str = "train", transform: Optional[Callable] = None,
                 labelled: bool = True, strict: bool = False, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        datasets, loaded = _load(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            name = next((n for n in SPLIT_NAMES.get(split, (split,)) if n in loaded), None)
            if name is None:
                raise DataError(f"--data {path}: no {split!r} split (it has {', '.join(loaded)})")
            ds = loaded[name]
        elif split == "train":
            ds = loaded
        else:
            raise DataError(f"--data {path} is one saved Dataset (no splits): it is the training set only")
        self.root, self.transform, self.max_pixels = f"{path}[{split}]", transform, max_pixels
        self.image_col, label_col = _columns(datasets, ds, str(path))
        if labelled and label_col is None:
            raise DataError(f"--data {path}: no label column (a ClassLabel feature, or one named label / labels)")
        self.label_col = label_col if labelled else None
        self.ds = ds.cast_column(self.image_col, datasets.Image(decode=False))  # our loader decodes the bytes
        feature = ds.features.get(label_col) if labelled else None
        self.targets = [int(t) for t in ds[label_col]] if labelled else [0] * len(ds)
        self.classes = (list(feature.names) if isinstance(feature, datasets.ClassLabel)
                        else [str(i) for i in range(max(self.targets, default=-1) + 1)]) if labelled else []
        self.skipped: list[tuple[str, str]] = []
        if strict:
            reasons = check_files([self._bytes(i) for i in range(len(ds))], strict=True, max_pixels=max_pixels)
            self.skipped = [(self._name(i), r) for i, r in enumerate(reasons) if r is not None]
            name_skipped(self.skipped, str(path), strict=True)
        if not len(ds):
            raise DataError(f"--data {path}: the {split} split is empty")
        self.failures = LoadFailures(len(ds))

    def _bytes(self, i: int) -> bytes:
        cell = self.ds[i][self.image_col]
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path"):
            return Path(cell["path"]).read_bytes()
        raise DataError(f"{self._name(i)}: no image bytes and no path")

    def _name(self, i: int) -> str:
        return f"{self.root} row {i}"

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        j, img = self.failures.load(len(self), index, lambda j: load_rgb(self._bytes(j), self.max_pixels),
                                    self._name, self.root)
        return (self.transform(img) if self.transform is not None else img), self.targets[j]

    def report(self) -> str:
        return f"data {self.root}: {len(self)} rows, {self.load_failures} failed to decode while training"
