"""The suite's guard (tests/conftest.py) refuses files beside the clone, but not the temp folder or the caches."""
import os
import tempfile

import pytest

import conftest


def _beside_is_exempt() -> bool:
    around = conftest._AROUND
    return around == os.sep or any(around == r or around.startswith(r + os.sep) for r in conftest._EXEMPT)


def test_a_file_beside_the_clone_is_refused(tmp_path, monkeypatch):
    """Where the clone sits, or, where that is itself exempt (a clone in the temp folder or a cache, as CI's), in a
    stand-in layout: a folder holding a clone, whose other files the hook must refuse and whose clone it allows."""
    around = conftest._AROUND
    if _beside_is_exempt():
        around, clone = str(tmp_path), str(tmp_path / "clone")
        os.mkdir(clone)
        monkeypatch.setattr(conftest, "_AROUND", around)
        monkeypatch.setattr(conftest, "_EXEMPT", (clone,))
        with open(os.path.join(clone, "inside.txt"), "w") as f:  # the clone itself stays open to the tests
            f.write("ok")
    beside = os.path.join(around, "not-in-the-clone.txt")
    with pytest.raises(RuntimeError, match="outside the repository"):
        open(beside)


def test_temp_files_and_the_clone_are_allowed(tmp_path):
    (tmp_path / "x.txt").write_text("ok")  # pytest's tmp_path, wherever the clone sits
    fd, name = tempfile.mkstemp(prefix="armvision-guard-")
    os.close(fd)
    try:
        with open(name, "w") as f:
            f.write("ok")
    finally:
        os.unlink(name)
    with open(os.path.join(conftest._REPO, "README.md")) as f:
        assert f.read(1)
