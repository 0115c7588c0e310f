import logging

import numpy as np
import pytest
import torch
from PIL import Image

from armvision.data import (AugmentSeeded, SafeImageFolder, build_dataset, embedded_digits, eval_transform,
                            finetune_transform, pretrain_transform)
from armvision.errors import DataError


def test_embedded_digits_split_is_fixed_and_stratified():
    tr, va = embedded_digits("train", 32), embedded_digits("val", 32)
    assert (len(tr), len(va)) == (1497, 300)
    counts = np.bincount(va.targets, minlength=10)
    assert counts.min() >= 28 and counts.max() <= 31  # stratified: ~30 per class
    img, y = tr[0]
    assert img.size == (32, 32) and img.mode == "RGB" and 0 <= y < 10
    # the same split every time, and real digits (not noise): mean images of two classes differ
    assert embedded_digits("train", 32).targets == tr.targets
    # the shipped arrays are scikit-learn's `load_digits()` (images as uint8 0..16, targets), byte for byte: these
    # hashes were taken from scikit-learn 1.9.1's arrays, which are no longer a dependency
    from importlib.resources import files
    import hashlib

    d = np.load(files("armvision.data") / "resources" / "digits.npz")
    digest = {k: hashlib.sha256(np.ascontiguousarray(d[k]).tobytes()).hexdigest()[:16] for k in ("images", "target")}
    assert digest == {"images": "8f26b2bd9d135c25", "target": "8ba4f891220f5e4c"}
    label = tr.targets[0]
    ups = [np.asarray(Image.fromarray(np.round(im.astype(np.float64) * 255 / 16).astype(np.uint8)).resize((32, 32), Image.BICUBIC))
           for im, t in zip(d["images"], d["target"]) if t == label]
    assert any(np.array_equal(u, tr.images[0]) for u in ups)  # one of the digits, upsampled


def test_build_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_dataset(str(tmp_path / "nope"), "train", None)
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="missing .*val"):
        build_dataset(str(tmp_path / "d"), "val", None)
    with pytest.raises(DataError, match="no class sub-folders"):
        build_dataset(str(tmp_path / "d"), "train", None)
    (tmp_path / "d" / "train" / "cls").mkdir()
    with pytest.raises(DataError, match="no readable images"):
        build_dataset(str(tmp_path / "d"), "train", None)


def test_bad_files_are_skipped_and_named(bad_folder, caplog):
    with caplog.at_level(logging.WARNING):
        ds = SafeImageFolder(bad_folder / "train", transform=pretrain_transform(16))
    skipped = {p.rsplit("/", 1)[-1] for p, _ in ds.skipped}
    assert skipped == {"empty.jpg", "notes.txt", "fake.png"}
    assert "empty.jpg" in caplog.text and "skipping 3 unreadable" in caplog.text
    assert len(ds) == 12 + 4  # 12 good + corrupt (found at decode time) + rgba + gray + tiny
    with caplog.at_level(logging.WARNING):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 16, 16)
    assert ds.load_failures == 1 and "corrupt.jpg" in caplog.text
    assert "3 file(s) skipped when scanning, 1 failed to decode" in ds.report()


def test_strict_data_fails_before_training(bad_folder):
    with pytest.raises(DataError, match=r"(?s)4 unreadable file\(s\).*corrupt.jpg"):
        build_dataset(str(bad_folder), "train", None, strict=True)


def test_transforms_shapes_and_eval_is_deterministic():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    assert pretrain_transform(32)(img).shape == (3, 32, 32)
    assert finetune_transform(32)(img).shape == (3, 32, 32)
    ev = eval_transform(32, crop_pct=0.875)
    a, b = ev(img), ev(img)
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    assert ev.transforms[0].size == 36  # 32 / 0.875 -> 36, then center crop 32


def test_augment_seeded_is_reproducible_and_leaves_global_rng_alone():
    ds = AugmentSeeded(embedded_digits("train", 16, transform=finetune_transform(16)), seed=3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = ds[5][0]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(ds[5][0], a)  # same (seed, epoch, index) -> same augmentation
    ds.set_epoch(1)
    assert not torch.equal(ds[5][0], a)  # another epoch -> another augmentation
    assert ds.classes == [str(i) for i in range(10)]


def test_randaugment_posterize_at_max_magnitude_does_not_crash():
    # rand-m9-mstd0.5-inc1 can draw magnitude 10 -> posterize to 0 bits, which Pillow 13 rejects.
    from timm.data import auto_augment

    tf = finetune_transform(16, auto_augment="rand-m10-n4-inc1-mstd0", reprob=0.0)
    ra = [t for t in tf.transforms if hasattr(t, "ops")][0]
    posts = [op for op in ra.ops if op.name == "PosterizeIncreasing"]
    assert posts and all(op.aug_fn is not auto_augment.posterize for op in posts)
    img = Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8))
    out = posts[0].aug_fn(img, 0)
    assert np.asarray(out).max() == 0  # Pillow < 13 behaviour: 0 bits -> black
    for op in posts:
        op.prob = 1.0
    torch.manual_seed(0)
    for _ in range(5):
        assert tf(img).shape == (3, 16, 16)
