import numpy as np
import pytest
from PIL import Image


def make_bad_folder(root):
    """train/ and val/ with two classes of good images plus every kind of bad file of the issue."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(d / f"ok{i}.jpg")
    d = root / "train" / "a"
    good = (d / "ok0.jpg").read_bytes()
    (d / "corrupt.jpg").write_bytes(good[:200] + b"\x00garbage" * 50)  # valid header, broken body
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    (d / "fake.png").write_text("not a png either")
    Image.fromarray(rng.integers(0, 255, (16, 16, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").save(d / "gray.png")
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / "tiny.png")
    return root


@pytest.fixture
def bad_folder(tmp_path):
    return make_bad_folder(tmp_path / "data")
