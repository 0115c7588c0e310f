"""Issue 13 (4): hostile image folders: symbolic-link loops and duplicates, huge images, strict scans with bounded
memory, 16-bit and float images, warnings once per file."""
import logging
import os
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from armvision.data import SafeImageFolder, build_dataset
from armvision.data import images as ds_mod
from armvision.errors import DataError


def _folder(root, n=3):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((12, 12, 3), (20 * i + (c == "b") * 100) % 256, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_symlink_loop_is_cut_and_duplicates_are_used_once(tmp_path, caplog):
    root = _folder(tmp_path / "train")
    os.symlink("..", root / "a" / "up")  # a loop: a/up/a/up/... used to be followed 40 levels deep
    os.symlink(str(root / "b"), root / "a" / "b_again")  # another class reached through a link
    (root / "a" / "sub").mkdir()
    os.symlink("../0.png", root / "a" / "sub" / "same.png")  # one file, two paths
    os.symlink("missing.png", root / "a" / "broken.png")
    with caplog.at_level(logging.WARNING):
        ds = SafeImageFolder(root)
    assert len(ds) == 6 and sorted(ds.targets) == [0, 0, 0, 1, 1, 1]  # each real image once, in its own class
    why = {os.path.relpath(p, root): r for p, r in ds.skipped}
    assert "loop" in why["a/up"] and "already scanned" in why["a/b_again"]
    assert "same file as" in why["a/sub/same.png"] and "broken" in why["a/broken.png"]
    assert "a/up" in caplog.text


def test_images_above_the_pixel_limit_are_skipped_and_named_unless_raised(tmp_path):
    root = _folder(tmp_path / "train")
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(root / "a" / "big.png")
    ds = SafeImageFolder(root, max_pixels=100_000)
    (path, why), = [s for s in ds.skipped if s[0].endswith("big.png")]
    assert "400x300 = 120,000 pixels" in why and "--max-image-pixels" in why
    assert len(SafeImageFolder(root, max_pixels=200_000)) == 7  # raised: used
    with pytest.raises(DataError, match="big.png: 400x300"):
        build_dataset(str(tmp_path), "train", None, strict=True, max_pixels=100_000)


def test_strict_scan_decodes_with_few_threads_and_a_pixel_budget(tmp_path, monkeypatch):
    root = _folder(tmp_path / "train", n=8)
    monkeypatch.setattr(ds_mod, "STRICT_PIXEL_BUDGET", 12 * 12 * 2)  # two 12x12 images in flight at most
    state = {"now": 0, "peak": 0, "threads": set()}
    lock = threading.Lock()
    real = ds_mod.to_rgb

    def counting(im):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            state["threads"].add(threading.get_ident())
        try:
            import time
            time.sleep(0.01)
            return real(im)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(ds_mod, "to_rgb", counting)
    ds = SafeImageFolder(root, strict=True, check_threads=16)  # asked for 16 threads: gets at most 4
    assert len(ds) == 16 and not ds.skipped
    assert state["peak"] <= 2 and len(state["threads"]) <= ds_mod.STRICT_THREADS


def test_16_bit_grey_png_keeps_its_brightness_and_float_images_are_skipped(tmp_path):
    root = _folder(tmp_path / "train")
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(root / "a" / "grey16.png")  # mid grey, 16 bits
    assert Image.open(root / "a" / "grey16.png").mode.startswith("I")
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(root / "b" / "float.tiff")
    ds = SafeImageFolder(root)
    i = [os.path.basename(p) for p, _ in ds.samples].index("grey16.png")
    px = np.asarray(ds[i][0])
    assert px.shape == (8, 8, 3) and abs(int(px[0, 0, 0]) - 128) <= 1  # was 255: 99.6 % white
    (path, why), = [s for s in ds.skipped if s[0].endswith("float.tiff")]
    assert "mode F" in why


def test_no_decompression_bomb_warning_per_load_and_one_warning_per_bad_file(tmp_path, monkeypatch, caplog):
    root = _folder(tmp_path / "train")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would warn on every 12x12 image
    ds = SafeImageFolder(root, max_pixels=10_000)
    good = open(root / "a" / "0.png", "rb").read()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            for i in range(len(ds)):
                ds[i]
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    (root / "a" / "1.png").write_bytes(good[:33] + b"garbage" * 20)  # breaks after the scan: found at load
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            for i in range(len(ds)):
                ds[i]
    assert caplog.text.count("1.png") == 1 and ds.load_failures == 1
