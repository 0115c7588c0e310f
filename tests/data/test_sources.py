"""What --data takes besides ImageFolders (issue 23, items 5 and 6): folders and lists of unlabelled images for
pretraining, webdataset tar shards streamed and sharded over processes x workers without duplicates, Hugging Face
datasets saved on disk; with the ImageFolder's hygiene (bad samples skipped and named, --strict-data refuses)."""
import io
import logging
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from armvision.data import ImageFiles, TarShards, build_dataset, eval_transform, split_exists
from armvision.data.streams import expand_braces, find_shards
from armvision.errors import DataError

TF = eval_transform(16, crop_pct=1.0)


def _png(seed, size=20):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_shards(folder, n_shards, per_shard, start=0, bad=(), no_image=(), classes=3):
    """webdataset's layout, written with tarfile: KEY.png + KEY.cls per sample; `bad` keys get a broken image,
    `no_image` keys only a label."""
    folder.mkdir(parents=True, exist_ok=True)
    key = start
    for s in range(n_shards):
        with tarfile.open(folder / f"shard-{s:04d}.tar", "w") as tar:
            for _ in range(per_shard):
                members = {"cls": str(key % classes).encode()}
                if key not in no_image:
                    members["png"] = b"\x89PNG\r\n\x1a\nbroken" if key in bad else _png(key)
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"{key:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                key += 1
    return folder


def _keys(stream, workers):
    """(key of every sample, label) streamed through a DataLoader with `workers` workers: images carry their key."""
    out = []
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    for img, label in loader:
        out.append((int(img.flatten()[0].item()), label))
    return out


class KeyOf:
    """A transform that returns the sample's key, read back from the image's first pixels (tests only)."""

    def __init__(self, index):
        self.index = index

    def __call__(self, img):
        return torch.tensor([self.index[np.asarray(img)[:2, :2].tobytes()]])


@pytest.mark.parametrize("n_shards", [8, 3])  # shards split over the 4 slots, and fewer shards than slots
def test_every_sample_once_over_2_ranks_x_2_workers(tmp_path, n_shards):
    per = 24 // n_shards
    root = write_shards(tmp_path / "train", n_shards, per)
    index = {np.asarray(Image.open(io.BytesIO(_png(k))).convert("RGB"))[:2, :2].tobytes(): k for k in range(24)}
    seen = []
    for rank in (0, 1):
        stream = TarShards(sorted(map(str, root.glob("*.tar"))), KeyOf(index), train=False, rank=rank, world=2)
        assert len(stream) == 24 and stream.classes == ["0", "1", "2"]
        got = _keys(stream, workers=2)
        assert all(label == key % 3 for key, label in got)
        seen += [k for k, _ in got]
    assert sorted(seen) == list(range(24))  # each sample exactly once


def test_training_streams_repeat_shuffle_by_seed_and_resume_exactly(tmp_path):
    root = write_shards(tmp_path / "train", 4, 6)
    index = {np.asarray(Image.open(io.BytesIO(_png(k))).convert("RGB"))[:2, :2].tobytes(): k for k in range(24)}
    shards = sorted(map(str, root.glob("*.tar")))

    def batches(epoch, start=0, seed=0, n=8):
        stream = TarShards(shards, KeyOf(index), train=True, seed=seed, buffer=5)
        stream.set_epoch(epoch, start, batch_size=3)
        it = iter(DataLoader(stream, batch_size=3, num_workers=2, drop_last=True))
        return [next(it)[0].flatten().tolist() for _ in range(n - start)]

    a = batches(0)
    assert a == batches(0) and a != batches(1) and a != batches(0, seed=1)
    assert sorted(sum(a, [])) == list(range(24))  # one pass of 24 = 8 batches: every sample once
    assert batches(0, n=12)[8:] != a[:4]  # the next pass continues, in another order
    assert batches(0, start=5) == a[5:]  # a resumed epoch starts where it stopped (workers skip undecoded)


def test_bad_samples_are_skipped_and_named_or_refused(tmp_path, caplog):
    root = write_shards(tmp_path / "data" / "train", 2, 5, bad={3}, no_image={7})
    with caplog.at_level(logging.WARNING):
        stream = build_dataset(str(tmp_path / "data"), "train", TF, train=False)
        assert len(stream) == 9  # the sample without an image is named when the shards are indexed
        got = list(stream)
    assert len(got) == 8 and "000007" in caplog.text and "no image member" in caplog.text
    assert sum("000003" in r.getMessage() for r in caplog.records) == 1  # named once
    with pytest.raises(DataError, match="000003.*--strict-data|strict-data"):
        build_dataset(str(tmp_path / "data"), "train", TF, strict=True)
    (root.parent / "classes.txt").write_text("ant\nbee\ncat\n")
    assert build_dataset(str(tmp_path / "data"), "train", TF).classes == ["ant", "bee", "cat"]
    assert not split_exists(str(tmp_path / "data"), "val")
    assert expand_braces("a-{08..10}-{x,y}.tar") == ["a-08-x.tar", "a-08-y.tar", "a-09-x.tar", "a-09-y.tar",
                                                      "a-10-x.tar", "a-10-y.tar"]
    assert find_shards(str(root / "shard-{0000..0001}.tar"), "train") == sorted(map(str, root.glob("*.tar")))
    with pytest.raises(DataError, match="no such shard"):
        find_shards(str(root / "shard-{0000..0002}.tar"), "train")


def test_shards_written_by_webdataset_are_read(tmp_path):
    wds = pytest.importorskip("webdataset")
    (tmp_path / "train").mkdir()
    with wds.ShardWriter(str(tmp_path / "train" / "part-%04d.tar"), maxcount=4, verbose=0) as sink:
        for i in range(10):
            sink.write({"__key__": f"s{i:03d}", "png": _png(i), "cls": i % 2})
    stream = build_dataset(str(tmp_path), "train", TF, train=False)
    assert len(stream.shards) == 3 and len(stream) == 10 and stream.classes == ["0", "1"]
    assert [label for _, label in stream] == [i % 2 for i in range(10)]


def _photos(root, n, nested=True):
    for i in range(n):
        d = root / ("deep" if nested and i % 2 else "") / ("deeper" if nested and i % 3 == 0 else "")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 20, 3), i * 10, np.uint8)).save(d / f"p{i}.png")
    return root


def test_unlabelled_folders_and_lists(tmp_path, caplog):
    root = _photos(tmp_path / "photos", 7)
    (root / "notes.txt").write_text("no image")
    (root / "empty.png").write_bytes(b"")
    os.symlink(root, root / "deep" / "loop")
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(str(root), "train", TF, labelled=False)
    assert isinstance(ds, ImageFiles) and len(ds) == 7 and ds[0][0].shape == (3, 16, 16) and ds[0][1] == 0
    assert "notes.txt" in caplog.text and "empty.png" in caplog.text and "loop" in caplog.text
    with pytest.raises(DataError, match="strict-data"):
        build_dataset(str(root), "train", TF, labelled=False, strict=True)
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\nphotos/deeper/p0.png\n\nphotos/deep/p1.png\nphotos/missing.png\n"
                       f"photos/deeper/p0.png\n{root / 'deep' / 'deeper' / 'p3.png'}\n")
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(str(listing), "train", TF, labelled=False)
    assert [os.path.basename(p) for p in ds.paths] == ["p0.png", "p1.png", "p3.png"]
    assert "missing.png" in caplog.text and "listed again" in caplog.text
    assert split_exists(str(root), "train") and not split_exists(str(root), "val")
    with pytest.raises(DataError, match="one sub-folder per class"):  # finetuning needs the classes
        build_dataset(str(root), "train", TF)
