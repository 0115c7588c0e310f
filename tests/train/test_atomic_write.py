"""fileio: the one atomic-write helper behind checkpoints, the run lock, result JSON and save_pretrained."""
import ast
import errno
import inspect
import os
import signal
import subprocess
import sys
import time

import pytest

from armvision import fileio
from armvision.errors import ArmVisionError
from armvision.fileio import FileWriteError, atomic_write, atomic_write_via, create_exclusive, temp_path
from armvision.train.rundir import TEMP_PATTERN, remove_stale_temps


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_writes_text_bytes_and_through_a_file_object(tmp_path):
    assert atomic_write(tmp_path / "a.txt", "héllo\n") == tmp_path / "a.txt"
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    atomic_write(tmp_path / "sub" / "c.bin", lambda f: f.write(b"via file"))  # the folder is created
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "c.bin").read_bytes() == b"via file"
    atomic_write(tmp_path / "a.txt", "replaced")
    assert (tmp_path / "a.txt").read_text() == "replaced"
    assert _names(tmp_path) == ["a.txt", "b.bin", "sub"]  # no temp files


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "checkpoint-last.pth"
    target.write_bytes(b"old")

    def disk_full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FileWriteError) as info:
        atomic_write(target, disk_full)
    e = info.value
    assert isinstance(e, OSError) and isinstance(e, ArmVisionError)  # caught by `except OSError`; one CLI line
    assert e.errno == errno.ENOSPC and e.strerror == "No space left on device" and e.filename == str(target)
    assert str(e) == f"cannot write {target} (No space left on device)"
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["checkpoint-last.pth"]

    class NotPicklable(Exception):
        pass

    def broken(f):
        f.write(b"partial")
        raise NotPicklable("a writer's own error")

    with pytest.raises(NotPicklable):  # not an OSError: propagates as it is
        atomic_write(target, broken)
    assert target.read_bytes() == b"old" and _names(tmp_path) == ["checkpoint-last.pth"]


def test_a_failing_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("[]")

    def no_rename(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fileio.os, "replace", no_rename)
    with pytest.raises(FileWriteError, match=f"cannot write {target} \\(Permission denied\\)"):
        atomic_write(target, "[1]")
    assert target.read_text() == "[]" and _names(tmp_path) == ["r.json"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_names_the_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "x.txt").write_text("old")
    folder.chmod(0o555)
    try:
        with pytest.raises(FileWriteError, match="cannot write .*x.txt"):
            atomic_write(folder / "x.txt", "new")
    finally:
        folder.chmod(0o755)
    assert (folder / "x.txt").read_text() == "old"


def test_writers_that_need_a_file_name(tmp_path):
    target = tmp_path / "lib.so"
    atomic_write_via(target, lambda p: p.write_bytes(b"built"))
    assert target.read_bytes() == b"built"

    def compiler_error(p):
        p.write_bytes(b"half")
        raise RuntimeError("cc failed")

    with pytest.raises(RuntimeError, match="cc failed"):
        atomic_write_via(target, compiler_error)
    with pytest.raises(FileWriteError, match="lib.so"):  # the writer created nothing: the rename fails
        atomic_write_via(target, lambda p: None)
    assert target.read_bytes() == b"built" and _names(tmp_path) == ["lib.so"]


def test_create_exclusive_lets_exactly_one_caller_create(tmp_path):
    lock = tmp_path / ".armvision.lock"
    assert create_exclusive(lock, "first") is True
    assert create_exclusive(lock, "second") is False
    assert lock.read_text() == "first" and _names(tmp_path) == [".armvision.lock"]


def test_temp_names_are_the_ones_a_run_folder_cleans_up(tmp_path):
    for name in ("checkpoint-last.pth", "checkpoint-best.pth", ".armvision.lock"):
        tmp = temp_path(tmp_path / name)
        assert tmp.parent == tmp_path and TEMP_PATTERN.match(tmp.name), tmp.name
        assert tmp.name.endswith(f".tmp{os.getpid()}") and tmp.name.startswith(".")


def test_a_writer_killed_from_outside_leaves_the_old_file_and_debris_the_run_folder_removes(tmp_path):
    target = tmp_path / "checkpoint-last.pth"
    target.write_bytes(b"old checkpoint")
    script = ("import sys, time\nfrom armvision.fileio import atomic_write\n"
              "def slow(f):\n    f.write(b'partial'); f.flush(); time.sleep(60)\n"
              "atomic_write(sys.argv[1], slow)\n")
    p = subprocess.Popen([sys.executable, "-c", script, str(target)])
    try:
        deadline = time.time() + 120
        while not [q for q in tmp_path.iterdir() if q.name != target.name]:
            assert p.poll() is None and time.time() < deadline, "the writer never started"
            time.sleep(0.02)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert target.read_bytes() == b"old checkpoint"
    debris = [q for q in tmp_path.iterdir() if q.name != target.name]
    assert [q.name for q in debris] == [f".checkpoint-last.pth.tmp{p.pid}"]
    assert remove_stale_temps(tmp_path) == debris and _names(tmp_path) == [target.name]


def test_fileio_is_a_bottom_layer_module():
    tree = ast.parse(inspect.getsource(fileio))
    relative = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    absolute = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert relative == ["errors"] and not [m for m in absolute if m.startswith("armvision")]
