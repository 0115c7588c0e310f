"""The study's data splits, as folders of links that armvision's commands read through `--data`.

The plan's data has a train/ and a val/ split (an ImageFolder, or the shipped `embedded:mnist5k`, written out once
as PNG files under STUDY/data/pool). The study never judges a claim on the images that chose its budgets:
- test: the data's val/ split, held out; every study cell is evaluated on it;
- selection: a stratified `selection_fraction` of train/ (drawn once, seed 0); `--curves` is evaluated on it;
- fit: the rest of train/; pretraining, probes and finetuning train on it;
- labelled subsets: for each seed and label fraction, a stratified subset of fit drawn with that seed (so the
  intervals cover the choice of subset too); all methods of one seed share it.

A view is STUDY/data/views/NAME/{train,val}/CLASS/FILE, each FILE a relative link to the image; views are written
once by the parent process before any cell runs (writing into a temporary folder renamed into place).
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from armvision.data import EMBEDDED_MNIST, mnist5k_arrays, mnist5k_split
from armvision.errors import ConfigError

Files = Dict[str, List[Path]]  # class name -> image paths, sorted
SELECTION_SEED = 0


def data_root(root: Path) -> Path:
    return Path(root) / "data"


def pool(data: str, root: Path) -> Path:
    """The folder holding train/ and val/ of the plan's data (the embedded digits are written there once)."""
    if data != EMBEDDED_MNIST:
        base = Path(data)
        for split in ("train", "val"):
            if not (base / split).is_dir():
                raise ConfigError(f"--data {data}: missing {base / split}; give an ImageFolder with train/ and val/ "
                                  "(one sub-folder per class)")
        return base
    out = data_root(root) / "pool"
    if not out.is_dir():
        images, labels = mnist5k_arrays()
        tmp = out.with_name(f"pool.tmp-{os.getpid()}")
        for split, idx in zip(("train", "val"), mnist5k_split()):
            for i in idx:
                d = tmp / split / str(labels[i])
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i], "L").save(d / f"{i:04d}.png")
        tmp.rename(out)
    return out


def list_files(split_dir: Path) -> Files:
    """Image files of each class folder (recursively, links followed), sorted: the same order on every machine."""
    exts = tuple(IMG_EXTENSIONS)
    out: Files = {}
    for cls in sorted(p.name for p in split_dir.iterdir() if p.is_dir()):
        files = sorted(Path(dp) / f for dp, _, fs in os.walk(split_dir / cls, followlinks=True) for f in fs
                       if f.lower().endswith(exts))
        if files:
            out[cls] = files
    if not out:
        raise ConfigError(f"--data: {split_dir} has no class folder with images")
    return out


def _take(files: Files, fraction: float, seed: int) -> Tuple[Files, Files]:
    """(taken, rest): ceil(fraction x n) (at least 1) of each class, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    taken, rest = {}, {}
    for cls, fs in files.items():
        order = rng.permutation(len(fs))
        k = min(len(fs), max(1, math.ceil(fraction * len(fs))))
        taken[cls] = sorted(fs[i] for i in order[:k])
        rest[cls] = sorted(fs[i] for i in order[k:])
    return taken, rest


def splits(data: str, root: Path, selection_fraction: float) -> Dict[str, Files]:
    """{"fit", "selection", "test"}: the plan's data cut as the module docstring says."""
    base = pool(data, root)
    selection, fit = _take(list_files(base / "train"), selection_fraction, SELECTION_SEED)
    if any(not fs for fs in fit.values()):
        raise ConfigError(f"--data {data}: a class has too few train images to hold out a selection split")
    return {"fit": fit, "selection": selection, "test": list_files(base / "val")}


def labelled(fit: Files, fraction: float, seed: int) -> Files:
    """The labelled subset of fit for one seed and label fraction (the whole of fit for fraction 1)."""
    return fit if fraction >= 1.0 else _take(fit, fraction, seed)[0]


def view_name(kind: str, fraction: float = 1.0, seed: int = 0, split: str = "test") -> str:
    """Name of the view a cell reads: "pretrain", "probe", or "f{fraction}-s{seed}-{test|selection}"."""
    return kind if kind in ("pretrain", "probe") else f"f{fraction:g}-s{seed}-{split}"


def _link_split(files: Files, out: Path) -> None:
    for cls, fs in files.items():
        d = out / cls
        d.mkdir(parents=True)
        for f in fs:
            at = len(f.parts) - 1 - f.parts[::-1].index(cls)  # the path below the class folder, flattened
            name = "__".join(f.parts[at + 1:])
            os.symlink(os.path.relpath(f.resolve(), d), d / name)


def write_view(root: Path, name: str, train: Files, val: Files) -> Path:
    """STUDY/data/views/NAME with train/ and val/ linking the given files (kept if it already exists)."""
    out = data_root(root) / "views" / name
    if out.is_dir():
        return out
    tmp = out.with_name(f"{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _link_split(train, tmp / "train")
    _link_split(val, tmp / "val")
    tmp.rename(out)
    return out


def prepare_views(data: str, root: Path, selection_fraction: float, needs: Iterable[Tuple[str, float, int, str]]
                  ) -> Dict[str, int]:
    """Write every view the cells need ((kind, fraction, seed, split) each); returns the split sizes (images in
    fit, selection and test, and "labelled: FRACTION": the labelled images of one seed)."""
    s = splits(data, root, selection_fraction)
    needs = sorted(set(needs))
    sizes = {k: sum(len(fs) for fs in v.values()) for k, v in s.items()}
    for kind, fraction, seed, split in needs:
        name = view_name(kind, fraction, seed, split)
        if kind == "pretrain":
            write_view(root, name, s["fit"], s["selection"])
        elif kind == "probe":
            write_view(root, name, s["fit"], s["test"])
        else:
            subset = labelled(s["fit"], fraction, seed)
            write_view(root, name, subset, s[split])
            sizes[f"labelled: {fraction:g}"] = sum(len(fs) for fs in subset.values())
    return sizes
