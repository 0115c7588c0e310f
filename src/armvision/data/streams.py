"""webdataset tar shards, streamed: `--data DIR` with DIR/train/*.tar (or DIR/train-*.tar) and the same for val, or
`--data "shards/train-{000..099}.tar"` for the training images alone.

The format is webdataset's: a tar file whose members are grouped into samples by key (the member path up to the
first dot of its file name), e.g. `000017.jpg` + `000017.cls`; the image is the member with an image extension,
the label the integer text of `.cls` (or `.label`, `.target`). Class names come from `classes.txt` (one per line)
or `classes.json` (a list) beside the shards, else the label numbers. The tar files are read member by member, in
order (`tarfile` stream mode): nothing is extracted, any file system that streams works.

Sharding: a stream is read by `world` processes x `num_workers` DataLoader workers, the slots. Each slot reads its
own shards (shard i goes to slot i mod slots, in an order shuffled per epoch), so no sample is read twice; with fewer
shards than slots every slot reads all shards and keeps every slots-th sample. Training streams repeat (an epoch is
a fixed number of steps: samples // global batch), shuffle their shard order and a buffer of samples, and seed each
sample's augmentation by (seed, epoch, slot, position); evaluation streams read every sample once, in order.
Hygiene: a sample without an image, or whose image fails the header check or the decode, is skipped and named once
per process; `strict` decodes every image when the shards are indexed and lists the bad ones in one error.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import random
import re
import tarfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from torch.utils.data import IterableDataset, get_worker_info

from ..errors import DataError
from .datasets import call_seeded
from .images import DEFAULT_MAX_PIXELS, check_image, load_rgb, name_skipped

log = logging.getLogger("armvision.data")
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm", "tif", "tiff")
LABEL_KEYS = ("cls", "label", "target")
SHUFFLE_BUFFER = 1000


def expand_braces(pattern: str) -> list[str]:
    """webdataset's shard patterns: "a-{000..009}.tar" (numeric ranges keep their zero padding), "{x,y}"."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    body, head, tail = m.group(1), pattern[:m.start()], pattern[m.end():]
    r = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    items = ([str(i).zfill(len(r.group(1))) for i in range(int(r.group(1)), int(r.group(2)) + 1)] if r
             else body.split(","))
    return [p for item in items for p in expand_braces(head + item + tail)]


def find_shards(data: str, split: str) -> Optional[list[str]]:
    """The tar shards of `split` under `data` (DIR/split/*.tar, DIR/split-*.tar or DIR/split_*.tar), or those a
    pattern / .tar path names (training only); None when `data` holds no shards."""
    if os.path.isdir(data):
        for pattern in (os.path.join(data, split, "*.tar"), os.path.join(data, f"{split}-*.tar"),
                        os.path.join(data, f"{split}_*.tar")):
            found = sorted(glob.glob(pattern))
            if found:
                return found
        return None
    if data.endswith(".tar") or "{" in data or glob.has_magic(data):
        if split != "train":
            return []
        found = sorted(p for pat in expand_braces(data) for p in (glob.glob(pat) if glob.has_magic(pat) else [pat]))
        missing = [p for p in found if not os.path.isfile(p)]
        if missing or not found:
            raise DataError(f"--data {data}: no such shard {missing[0] if missing else data}")
        return found
    return None


def _split_key(name: str) -> tuple[str, str]:
    """"dir/000017.seg.png" -> ("dir/000017", "seg.png"): the key ends at the first dot of the file name."""
    folder, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return os.path.join(folder, stem) if folder else stem, ext.lower()


def read_samples(path: str, wanted: Optional[Callable[[str], bool]] = None
                 ) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) of each sample of a tar shard, in order. By default the file is read once,
    straight through (any stream works); with `wanted(extension)` only those members are read and the rest seeked
    over (their values are b""), which makes indexing a local shard a walk over its headers."""
    key, parts = None, {}
    try:
        with tarfile.open(path, "r|*" if wanted is None else "r:*") as tar:
            for member in tar:
                if not member.isfile() or os.path.basename(member.name).startswith("."):
                    continue
                k, ext = _split_key(member.name)
                if k != key and key is not None:
                    yield key, parts
                    parts = {}
                key = k
                parts[ext] = tar.extractfile(member).read() if wanted is None or wanted(ext) else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable tar shard ({e})") from None
    if key is not None:
        yield key, parts


def image_of(parts: dict[str, bytes]) -> Optional[bytes]:
    return next((parts[k] for k in IMAGE_KEYS if k in parts), None)


def label_of(parts: dict[str, bytes]) -> Optional[int]:
    for k in LABEL_KEYS:
        if k in parts:
            try:
                return int(parts[k].decode().strip())
            except (UnicodeDecodeError, ValueError):
                return None
    return None


def _class_names(shards: Sequence[str], top: int) -> list[str]:
    for folder in dict.fromkeys([os.path.dirname(shards[0]), os.path.dirname(os.path.dirname(shards[0]))]):
        txt, js = Path(folder, "classes.txt"), Path(folder, "classes.json")
        if txt.is_file():
            return [line.strip() for line in txt.read_text().splitlines() if line.strip()]
        if js.is_file():
            return [str(c) for c in json.loads(js.read_text())]
    return [str(i) for i in range(top + 1)]


class TarShards(IterableDataset):
    """(image, label) samples streamed from webdataset tar shards (see the module's docstring)."""

    def __init__(self, shards: Sequence[str], transform: Optional[Callable] = None, labelled: bool = True,
                 train: bool = True, seed: int = 0, rank: Optional[int] = None, world: Optional[int] = None,
                 strict: bool = False, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, buffer: int = SHUFFLE_BUFFER):
        self.shards, self.transform, self.labelled, self.train = list(shards), transform, labelled, train
        self.seed, self.max_pixels, self.buffer = int(seed), max_pixels, buffer
        self.rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        self.world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
        self.epoch, self.start_batch, self.batch_size = 0, 0, 1
        self.root = os.path.dirname(self.shards[0]) if self.shards else ""
        self._index(strict)

    def _index(self, strict: bool) -> None:
        """Count the samples (and labels) of every shard once; name (or, strict, refuse) the bad ones."""
        self.num_samples, top, self.skipped = 0, -1, []
        for shard in self.shards:
            wanted = lambda ext: (self.labelled and ext in LABEL_KEYS) or (strict and ext in IMAGE_KEYS)  # noqa: E731
            for key, parts in read_samples(shard, wanted):
                image, label = image_of(parts), label_of(parts)
                why = ("no image member (" + ", ".join(sorted(parts)) + ")" if image is None
                       else "no integer label (.cls)" if self.labelled and label is None
                       else check_image(image, full=strict, max_pixels=self.max_pixels) if strict else None)
                if why:
                    self.skipped.append((f"{shard}:{key}", why))
                    continue
                self.num_samples += 1
                top = max(top, label if label is not None else -1)
        name_skipped(self.skipped, f"the shards in {self.root}", strict)
        if not self.num_samples:
            raise DataError(f"the shards in {self.root} ({len(self.shards)}) hold no usable samples")
        self.classes = _class_names(self.shards, top) if self.labelled else []

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int, start_batch: int = 0, batch_size: int = 1) -> None:
        """The epoch to stream, and (resuming) how many of this process's batches of `batch_size` to skip."""
        self.epoch, self.start_batch, self.batch_size = int(epoch), int(start_batch), int(batch_size)

    def _slot(self) -> tuple[int, int, int]:
        """(slot, slots, samples already streamed) of this worker. The DataLoader asks its workers for batches in
        turn, worker 0 first; so when an epoch resumes at batch k, worker w plays the part of worker (w + k) mod W,
        and skips (undecoded) the batches that part had produced."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        part = (worker + self.start_batch) % workers
        done = max(0, -(-(self.start_batch - part) // workers)) * self.batch_size
        return self.rank * workers + part, self.world * workers, done

    def _pass(self, slot: int, slots: int, npass: int) -> Iterator[tuple[str, dict[str, bytes]]]:
        """This slot's samples, once each; training passes read the shards in an order of their own."""
        order = list(self.shards)
        if self.train:
            random.Random(f"{self.seed}-{self.epoch}-{npass}").shuffle(order)
        by_shard = len(order) >= slots
        position = 0
        for shard in (order[slot::slots] if by_shard else order):
            for key, parts in read_samples(shard):
                if by_shard or position % slots == slot:
                    yield f"{shard}:{key}", parts
                position += 1

    def _raw(self, slot: int, slots: int, rng: random.Random) -> Iterator[tuple[str, dict[str, bytes]]]:
        """Pass after pass when training (each shuffled through a buffer of its own), one pass otherwise."""
        npass = 0
        while True:
            yield from self._shuffled(self._pass(slot, slots, npass), rng)
            npass += 1
            if not self.train:
                return

    def _shuffled(self, items: Iterator, rng: random.Random) -> Iterator:
        if not self.train or self.buffer <= 1:
            yield from items
            return
        pool: list = []
        for item in items:
            pool.append(item)
            if len(pool) >= self.buffer:
                yield pool.pop(rng.randrange(len(pool)))
        rng.shuffle(pool)
        yield from pool

    def __iter__(self):
        slot, slots, done = self._slot()
        rng = random.Random(f"{self.seed}-{self.epoch}-{slot}")
        warned: set[str] = set()
        for n, (name, parts) in enumerate(self._raw(slot, slots, rng)):
            if n < done:
                continue
            sample = self._decode(name, parts, n, slot, warned)
            if sample is not None:
                yield sample

    def _decode(self, name: str, parts: dict[str, bytes], n: int, slot: int, warned: set[str]):
        image, label = image_of(parts), label_of(parts)
        try:
            if image is None or (self.labelled and label is None):
                raise DataError("no image" if image is None else "no integer label (.cls)")
            img = load_rgb(image, self.max_pixels)
        except Exception as e:  # PIL raises many types for bad files
            if name not in warned:
                warned.add(name)
                log.warning("skipping unreadable sample %s (%s: %s)", name, type(e).__name__, e)
            return None
        if self.transform is not None:  # its randomness drawn from (seed, epoch, slot, n)
            img = call_seeded([self.seed, self.epoch, slot, n], self.transform, img)
        return img, (label if label is not None else 0)

    def report(self) -> str:
        return f"data {self.root}: {len(self.shards)} shard(s), {len(self.skipped)} sample(s) skipped when indexed"
