"""A Hugging Face dataset saved on disk as --data (issue 23, item 6): splits, class names, bad rows replaced and named
once (or refused with --strict-data), and sharded over 2 processes x 2 workers without duplicates."""
import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from armvision.data import HFImages, build_dataset, eval_transform, split_exists
from armvision.errors import DataError
from armvision.train.distributed import ShardSampler

datasets = pytest.importorskip("datasets")
TF = eval_transform(16, crop_pct=1.0)


def _png(value, size=20):
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def save_hf(path, n_train=12, n_val=6, bad=(), names=("ant", "bee", "cat")):
    """A DatasetDict (train, validation) with an Image and a ClassLabel column, saved as datasets does it; pixel
    value = 10 x row, so a sample names itself."""
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})

    def split(n):
        return datasets.Dataset.from_dict({"image": [{"bytes": b"broken" if i in bad else _png(10 * i), "path": None}
                                                     for i in range(n)], "label": [i % 3 for i in range(n)]},
                                          features=feats)
    datasets.DatasetDict({"train": split(n_train), "validation": split(n_val)}).save_to_disk(str(path))
    return path


def test_splits_names_and_hygiene(tmp_path, caplog):
    path = save_hf(tmp_path / "hf", bad={4})
    ds = build_dataset(str(path), "train", TF)
    assert isinstance(ds, HFImages) and len(ds) == 12 and ds.classes == ["ant", "bee", "cat"]
    assert ds.targets == [i % 3 for i in range(12)] and split_exists(str(path), "val")
    assert len(build_dataset(str(path), "val", TF)) == 6  # "validation" is the val split
    with caplog.at_level(logging.WARNING):
        x, y = ds[4]  # the broken row is replaced by the next one, and named once
        ds[4]
    assert y == 5 % 3 and torch.allclose(x, ds[5][0])
    assert sum("row 4" in r.getMessage() for r in caplog.records) == 1 and ds.load_failures == 1
    with pytest.raises(DataError, match="row 4.*strict-data|strict-data"):
        build_dataset(str(path), "train", TF, strict=True)
    unlabelled = build_dataset(str(path), "train", TF, labelled=False)
    assert unlabelled[1][1] == 0 and unlabelled.classes == []
    with pytest.raises(DataError, match="no 'test' split"):
        HFImages(path, "test")


def test_every_row_once_over_2_ranks_x_2_workers(tmp_path):
    """Evaluation order: each process takes its rows (ShardSampler), its DataLoader workers take whole batches."""
    ds = build_dataset(str(save_hf(tmp_path / "hf", n_train=23)), "train", TF)
    seen = []
    for rank in (0, 1):
        loader = DataLoader(ds, batch_size=4, sampler=ShardSampler(len(ds), 2, rank), num_workers=2)
        for x, _ in loader:
            seen += [round(v) // 10 for v in (x[:, 0, 0, 0] * 0.229 + 0.485).mul(255).tolist()]
    assert sorted(seen) == list(range(23))


def test_a_saved_dataset_without_splits_and_without_datasets(tmp_path, monkeypatch):
    feats = datasets.Features({"img": datasets.Image()})
    datasets.Dataset.from_dict({"img": [{"bytes": _png(i), "path": None} for i in range(5)]},
                               features=feats).save_to_disk(str(tmp_path / "one"))
    assert len(build_dataset(str(tmp_path / "one"), "train", TF, labelled=False)) == 5
    assert not split_exists(str(tmp_path / "one"), "val")
    with pytest.raises(DataError, match="no label column"):
        build_dataset(str(tmp_path / "one"), "train", TF)
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(DataError, match=r"pip install 'armvision\[hf\]'"):
        build_dataset(str(tmp_path / "one"), "train", TF, labelled=False)
