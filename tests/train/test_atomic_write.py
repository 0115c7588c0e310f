"""fileio: the one atomic-write helper behind checkpoints, the run lock, result JSON and save_pretrained."""
import ast
import errno
import inspect
import os
import signal
import stat
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


READ_ONLY_WRITE = """
import sys
from armvision.fileio import FileWriteError, atomic_write
try:
    atomic_write(sys.argv[1], "new")
except FileWriteError as e:
    print(e)
    sys.exit(3)
"""


NO_OVERRIDE = 97  # exit code of a child that could not drop root's permission override


def _without_permission_override():
    """In the child, before it runs Python: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the capability
    bounding set, so that the program it runs is root whom folder permissions stop (prctl PR_CAPBSET_DROP)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            os._exit(NO_OVERRIDE)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_read_only_folder_names_the_file_even_for_root(tmp_path):
    """The write runs in a child process; as root, the child first gives up root's power to ignore permissions, so
    that the read-only folder means the same for everyone (issue 25: the test used to be skipped as root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "x.txt").write_text("old")
    folder.chmod(0o555)
    try:
        p = subprocess.run([sys.executable, "-c", READ_ONLY_WRITE, str(folder / "x.txt")], capture_output=True,
                           text=True, timeout=300,
                           preexec_fn=_without_permission_override if os.geteuid() == 0 else None)
    finally:
        folder.chmod(0o755)
    if p.returncode == NO_OVERRIDE:
        pytest.skip("root here cannot give up its permission override (no CAP_SETPCAP)")
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr[-2000:])
    assert p.stdout.strip() == f"cannot write {folder / 'x.txt'} (Permission denied)"
    assert (folder / "x.txt").read_text() == "old" and _names(folder) == ["x.txt"]


def test_a_folder_that_is_a_file_names_the_file(tmp_path):
    """A path under a regular file cannot be written by anyone, root included."""
    (tmp_path / "notes").write_text("a file")
    with pytest.raises(FileWriteError, match=f"cannot write {tmp_path / 'notes' / 'x.txt'}"):
        atomic_write(tmp_path / "notes" / "x.txt", "new")
    assert _names(tmp_path) == ["notes"] and (tmp_path / "notes").read_text() == "a file"


def _record_syncs(monkeypatch):
    """Log each fsync (which file or folder: its inode) and each rename, in order."""
    log = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        log.append(("fsync", st.st_ino, stat.S_ISDIR(st.st_mode)))
        return real_fsync(fd)

    def replace(src, dst):
        log.append(("replace", os.stat(src).st_ino, False))
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(fileio.os, "replace", replace)
    return log


@pytest.mark.parametrize("how", ["content", "via"])
def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch, how):
    """A crash (power loss) right after the rename must find the new content, and the rename itself, on disk."""
    log = _record_syncs(monkeypatch)
    target = tmp_path / "checkpoint-last.pth"
    if how == "content":
        atomic_write(target, b"weights")
    else:
        atomic_write_via(target, lambda p: p.write_bytes(b"weights"))
    file_ino, dir_ino = target.stat().st_ino, tmp_path.stat().st_ino
    assert ("fsync", file_ino, False) in log and ("fsync", dir_ino, True) in log, log
    renamed = log.index(("replace", file_ino, False))
    assert log.index(("fsync", file_ino, False)) < renamed < log.index(("fsync", dir_ino, True)), log
    assert target.read_bytes() == b"weights"


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
