"""A run folder has one owner: a lock file, no silent overwrites, and no debris left by killed runs.

`claim_run_dir(output, resume, overwrite)` (main process, before any work):
  - checks that OUTPUT is, or can become, a writable folder;
  - refuses a folder holding a finished or partial run (a checkpoint, log.jsonl or config.yaml) unless the run
    resumes it (`--resume`) or `--overwrite` moves the old run aside to OUTPUT.old-DATE-TIME (never deleted);
  - takes OUTPUT/.armvision.lock holding this process's pid, host and start time; a lock of a live process is
    refused with one line, a lock left by a dead process on this host is taken over with a notice;
  - removes our temp files (`.checkpoint-*.pth.tmp<pid>`) left by killed saves whose process is gone.
The returned RunLock is released (the lock file removed) when the run ends, however it ends.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Optional

from ..argcheck import check_output_dir
from ..errors import ConfigError
from ..fileio import atomic_write, create_exclusive

log = logging.getLogger(__name__)

LOCK = ".armvision.lock"
RUN_FILES = ("checkpoint-last.pth", "checkpoint-best.pth", "log.jsonl", "config.yaml")
# our temp files, named with the writing process's pid: fileio.atomic_write's (checkpoints, the lock), the write probe's
TEMP_PATTERN = re.compile(r"^(?:\.checkpoint-[\w.-]+\.pth\.tmp|\.armvision\.lock\.tmp|\.armvision-write-test-)(\d+)$")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: it holds nothing any more
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """The lock file of one run folder; `release()` removes it if it is still ours."""

    def __init__(self, path: Path, record: dict):
        self.path, self.record = path, record

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("pid") == self.record["pid"]:
                self.path.unlink()
        except (OSError, ValueError):
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


def acquire_lock(folder: Path) -> RunLock:
    """Create folder/.armvision.lock atomically (temp file + hard link), or take over a dead process's lock."""
    path = folder / LOCK
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "start": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    text = json.dumps(record) + "\n"
    for _ in range(3):
        if create_exclusive(path, text):  # exactly one of two racing runs gets it
            return RunLock(path, record)
        other = _read_lock(path)
        if other is None:  # torn or foreign content: a run killed while writing it, or not ours
            age = time.time() - path.stat().st_mtime if path.exists() else 0.0
            if age < 5.0:
                time.sleep(0.5)
                continue
            log.warning("%s: replacing an unreadable lock file", path)
        elif other.get("host") != record["host"]:
            raise ConfigError(f"--output {folder}: in use by process {other['pid']} on host {other.get('host')} "
                              f"(started {other.get('start')}); if that run is gone, delete {path}")
        elif pid_alive(other["pid"]) and other["pid"] != os.getpid():
            raise ConfigError(f"--output {folder}: in use by the running process {other['pid']} (started "
                              f"{other.get('start')}); wait for it, or give another --output")
        else:
            log.warning("%s: taking over the stale lock of process %d (started %s, no longer running)",
                        folder, other["pid"], other.get("start"))
        atomic_write(path, text)
        if _read_lock(path) == record:
            return RunLock(path, record)
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
    if lock is not None and lock.get("host") == socket.gethostname() and pid_alive(lock["pid"]) \
            and lock["pid"] != os.getpid():
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
