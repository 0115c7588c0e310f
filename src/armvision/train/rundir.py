"""A run folder has one owner: a lock file, no silent overwrites, and no debris left by killed runs.

`claim_run_dir(output, resume, overwrite)` (main process, before any work):
  - checks that OUTPUT is, or can become, a writable folder;
  - refuses a folder whose lock belongs to a running process (before anything else: `--overwrite` must not move a
    live run aside);
  - refuses a folder holding a finished or partial run (a checkpoint, log.jsonl or config.yaml) unless the run
    resumes it (`--resume`) or `--overwrite` moves the old run aside to OUTPUT.old-DATE-TIME (never deleted);
  - takes OUTPUT/.armvision.lock, created exclusively (of two runs starting together exactly one creates it), holding
    this process's pid, host and identity (its start time after boot, and the boot's id: a later process that
    reuses the pid is not the owner). A lock of a live owner is refused with one line; a lock whose owner is gone
    (on this host) is moved aside and the exclusive create is tried again, so that of two runs taking over the same
    stale lock only one wins (inspecting and taking the lock also happens under an flock of the folder where the
    file system has one);
  - removes our temp files (`.checkpoint-*.pth.tmp<pid>`) left by killed saves whose process is gone.
The returned RunLock is released (the lock file removed) when the run ends, however it ends.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Iterator, Optional

from ..argcheck import check_output_dir
from ..errors import ConfigError
from ..fileio import create_exclusive

log = logging.getLogger(__name__)

LOCK = ".armvision.lock"
RUN_FILES = ("checkpoint-last.pth", "checkpoint-best.pth", "log.jsonl", "config.yaml")
# our temp files, named with the writing process's pid: fileio.atomic_write's (checkpoints, the lock), a stale lock
# being moved aside, the write probe's
TEMP_PATTERN = re.compile(r"^(?:\.checkpoint-[\w.-]+\.pth\.tmp|\.armvision\.lock\.(?:tmp|stale)|"
                          r"\.armvision-write-test-)(\d+)$")
TORN_GRACE = 5.0  # seconds an unreadable lock may be a lock being written


def process_identity(pid: int) -> Optional[str]:
    """What tells process `pid` apart from a later process given the same pid: the boot's id and the process's start
    time in clock ticks after boot (Linux /proc); None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]  # field 22, starttime
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{f.read().strip()}:{start}"
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2**31
    try:  # a killed child not yet reaped by its parent is a zombie: it holds nothing any more
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def owner_alive(record: dict) -> bool:
    """Whether the process a lock record names is still running (not a later process that reuses its pid)."""
    pid = record["pid"]
    if not pid_alive(pid):
        return False
    saved, now = record.get("identity"), process_identity(pid)
    return saved is None or now is None or saved == now


def own_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "identity": process_identity(os.getpid()),
            "start": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


class RunLock:
    """The lock file of one run folder; `release()` removes it if it is still ours."""

    def __init__(self, path: Path, record: dict):
        self.path, self.record = path, record

    def release(self) -> None:
        rec = _read_lock(self.path)
        if rec is not None and (rec["pid"], rec.get("identity")) == (self.record["pid"], self.record["identity"]):
            try:
                self.path.unlink()
            except OSError:
                pass

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_lock(path: Path) -> Optional[dict]:
    try:
        rec = json.loads(path.read_text())
        return rec if isinstance(rec, dict) and isinstance(rec.get("pid"), int) else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _folder_guard(folder: Path) -> Iterator[None]:
    """An exclusive flock of the folder while its lock is inspected and taken (the kernel drops it if we die); on a
    file system without flock for folders, no guard: the exclusive create and the checked move aside still hold."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the flock


def _move_aside(path: Path, judged: bytes) -> None:
    """Move the stale lock `path` (whose content was `judged`) out of the way; if what was moved is not that lock
    (another process replaced it meanwhile), put it back."""
    aside = path.with_name(f"{LOCK}.stale{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # another run moved it first
        return
    try:
        if aside.read_bytes() != judged:  # a fresh lock of another run: not ours to remove
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
    finally:
        with contextlib.suppress(OSError):
            aside.unlink()


def _refuse_or_judge(folder: Path, path: Path, other: Optional[dict], me: dict) -> bool:
    """Raise ConfigError when the lock belongs to a live run; True when it is stale (its owner is gone), False when
    it is unreadable but young (a lock being written: try again)."""
    if other is None:  # torn or foreign content: a run killed while writing it, or not ours
        age = time.time() - path.stat().st_mtime if path.exists() else TORN_GRACE
        if age < TORN_GRACE:
            return False
        log.warning("%s: replacing an unreadable lock file", path)
        return True
    if other.get("host") != me["host"]:
        raise ConfigError(f"--output {folder}: in use by process {other['pid']} on host {other.get('host')} "
                          f"(started {other.get('start')}); if that run is gone, delete {path}")
    if other["pid"] != me["pid"] and owner_alive(other):
        raise ConfigError(f"--output {folder}: in use by the running process {other['pid']} (started "
                          f"{other.get('start')}); wait for it, or give another --output")
    log.warning("%s: taking over the stale lock of process %d (started %s, no longer running)",
                folder, other["pid"], other.get("start"))
    return True


def acquire_lock(folder: Path, attempts: int = 20) -> RunLock:
    """Create folder/.armvision.lock exclusively; a stale one (its owner gone) is moved aside first."""
    path, me = folder / LOCK, own_record()
    text = json.dumps(me) + "\n"
    with _folder_guard(folder):
        for _ in range(attempts):
            if create_exclusive(path, text):  # exactly one of two racing runs gets it
                return RunLock(path, me)
            try:
                judged = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                other = json.loads(judged)
                other = other if isinstance(other, dict) and isinstance(other.get("pid"), int) else None
            except ValueError:
                other = None
            if _refuse_or_judge(folder, path, other, me):
                _move_aside(path, judged)
            else:
                time.sleep(0.5)
    raise ConfigError(f"--output {folder}: could not take the lock {path}; another run may be starting there")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete our temp files whose writing process is gone (killed mid-save); returns them."""
    removed = []
    for p in folder.iterdir():
        m = TEMP_PATTERN.match(p.name)
        if m and p.is_file() and (int(m.group(1)) == os.getpid() or not pid_alive(int(m.group(1)))):
            try:
                size = p.stat().st_size
                p.unlink()
            except OSError:
                continue
            removed.append(p)
            log.warning("removed %s (%.1f MB), left by a save that was interrupted", p, size / 1e6)
    return removed


def existing_run(folder: Path) -> list[str]:
    """The run files in `folder` (empty: no run there)."""
    return [n for n in RUN_FILES if (folder / n).exists()] if folder.is_dir() else []


def move_aside(folder: Path) -> Path:
    """Rename `folder` to folder.old-DATE-TIME (a free name); returns the new path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = folder.with_name(f"{folder.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.old-{stamp}-{n}")
    folder.rename(target)
    return target


def claim_run_dir(output: str | os.PathLike, resume: Optional[str], overwrite: bool) -> RunLock:
    """Check, lock and clean OUTPUT before a run starts (see the module docstring); returns the held lock."""
    folder = Path(output)
    check_output_dir(folder, "--output", create=False)
    lock = _read_lock(folder / LOCK)
    if lock is not None and lock.get("host") == socket.gethostname() and lock["pid"] != os.getpid() \
            and owner_alive(lock):
        raise ConfigError(f"--output {folder}: in use by the running process {lock['pid']} (started "
                          f"{lock.get('start')}); wait for it, or give another --output")
    found = existing_run(folder)
    if found and not resume:
        if not overwrite:
            raise ConfigError(f"--output {folder} already holds a run ({', '.join(found)}); continue it with "
                              "--resume auto, move it aside with --overwrite, or give another --output")
        try:
            aside = move_aside(folder)
        except OSError as e:
            raise ConfigError(f"--output {folder}: cannot move the old run aside ({e.strerror or e})") from None
        log.warning("--overwrite: moved the previous run in %s to %s", folder, aside)
    check_output_dir(folder, "--output")
    held = acquire_lock(folder)
    try:
        remove_stale_temps(folder)
    except OSError:
        pass
    return held
