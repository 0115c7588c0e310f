"""Atomic file writes: a reader (or a crash) never sees a half-written file, and a failed write keeps the old one.

Every file armvision writes whole (checkpoints, save_pretrained weights, result JSON, study cells, the lock, the
compiled CPU kernel) goes through `atomic_write`: the content goes to a temp file in the same folder
(`.NAME.tmpPID`, so that a run folder's owner can recognise and remove the debris of a killed writer), is
flushed to disk (fsync), then renamed over NAME with `os.replace`. On any failure the temp file is removed, NAME is
left as it was, and an OSError becomes `FileWriteError`, which names the file.

This is a bottom-layer module: it imports nothing from armvision but `errors`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Callable, Union

from .errors import ArmVisionError

Content = Union[str, bytes, Callable[[IO[bytes]], Any]]


class FileWriteError(ArmVisionError, OSError):
    """A file could not be written (disk full, read-only folder, ...); the previous version is kept.

    An OSError (errno and strerror of the cause) whose filename is the file that was to be written."""

    def __str__(self) -> str:
        return f"cannot write {self.filename} ({self.strerror})"


def temp_path(path: str | os.PathLike) -> Path:
    """The temp file `atomic_write` uses for `path`: hidden, same folder, named with this process's pid."""
    path = Path(path)
    name = path.name if path.name.startswith(".") else f".{path.name}"
    return path.with_name(f"{name}.tmp{os.getpid()}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every file system lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_content(tmp: Path, content: Content) -> None:
    with open(tmp, "wb") as f:
        if isinstance(content, str):
            f.write(content.encode())
        elif isinstance(content, bytes):
            f.write(content)
        else:
            content(f)
        f.flush()
        os.fsync(f.fileno())


def _failed(path: Path, e: OSError) -> FileWriteError:
    return FileWriteError(e.errno, e.strerror or str(e), str(path))


def atomic_write(path: str | os.PathLike, content: Content) -> Path:
    """Write `content` (text, bytes, or a function that writes to a binary file object) to `path` atomically.

    Returns `path`. Raises FileWriteError (an OSError naming `path`) if it cannot be written; `path` then keeps its
    previous content and no temp file is left. Errors of a `content` function that are not OSErrors propagate."""
    return _replace(Path(path), lambda tmp: _write_content(tmp, content))


def atomic_write_via(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Like `atomic_write`, for writers that need a file name (safetensors, a compiler): `write(tmp_path)` creates
    the temp file, which is then fsynced and renamed over `path`."""
    def write_and_sync(tmp: Path) -> None:
        write(tmp)
        _fsync_file(tmp)

    return _replace(Path(path), write_and_sync)


def _replace(path: Path, write: Callable[[Path], None]) -> Path:
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if isinstance(e, FileWriteError):
            raise
        raise _failed(path, e) from e
    finally:
        _remove(tmp)
    _fsync_dir(path.parent)
    return path


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # e.g. the folder became read-only: nothing more we can do, the caller sees the first error
        pass


def create_exclusive(path: str | os.PathLike, content: str | bytes) -> bool:
    """Create `path` with `content` only if it does not exist, atomically (a complete temp file hard-linked to
    `path`): of two racing callers exactly one gets True. Raises FileWriteError on other failures."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        _write_content(tmp, content)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        raise _failed(path, e) from e
    finally:
        _remove(tmp)
