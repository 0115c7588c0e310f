"""Issue 25 (1, 7): the run lock. Two processes taking over one stale lock never both win (raced many times, from
two real processes started together); a live unrelated process that reuses a dead owner's pid does not hold the
folder; and each of the lock's two checks (the early one of `claim_run_dir`, the lock's own) is tested alone."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from armvision.errors import ConfigError
from armvision.train.rundir import LOCK, acquire_lock, claim_run_dir, process_identity

ROUNDS = 100
WORKER = r"""
import sys, time
from pathlib import Path
from armvision.errors import ConfigError
from armvision.train.rundir import acquire_lock
held = []  # a winner keeps its lock (and stays alive) while the other tries
print("ready", flush=True)
for line in sys.stdin:
    folder, start = line.split()
    while time.time() < float(start):  # both processes try at the same instant
        pass
    try:
        held.append(acquire_lock(Path(folder)))
        print("won", flush=True)
    except ConfigError:
        print("lost", flush=True)
"""


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _stale(folder, pid):
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "start": "earlier"}))


@pytest.fixture
def sleeper():
    """A live process that is not an armvision run."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield p
    p.kill()
    p.wait()


def test_two_processes_taking_over_a_stale_lock_never_both_win(tmp_path):
    workers = [subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    try:
        assert [w.stdout.readline().strip() for w in workers] == ["ready", "ready"]
        dead = _dead_pid()
        outcomes = []
        for i in range(ROUNDS):
            folder = tmp_path / f"run{i}"
            _stale(folder, dead)
            start = time.time() + 0.05
            for w in workers:
                w.stdin.write(f"{folder} {start}\n")
                w.stdin.flush()
            outcomes.append(sorted(w.stdout.readline().strip() for w in workers))
        both = sum(o == ["won", "won"] for o in outcomes)
        assert both == 0 and all(o == ["lost", "won"] for o in outcomes), (both, outcomes)
    finally:
        for w in workers:
            w.kill()
            w.wait()


def test_a_reused_pid_does_not_hold_the_folder(tmp_path, sleeper, caplog):
    """The lock names a pid that is now a live, unrelated process (started after the lock's owner): stale."""
    folder = tmp_path / "run"
    folder.mkdir()
    assert process_identity(sleeper.pid) is not None
    rec = {"pid": sleeper.pid, "host": socket.gethostname(), "start": "earlier", "identity": "another-boot:12345"}
    (folder / LOCK).write_text(json.dumps(rec))
    lock = claim_run_dir(folder, None, False)
    assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
    assert f"stale lock of process {sleeper.pid}" in caplog.text
    lock.release()
    assert not (folder / LOCK).exists()


def test_the_lock_refuses_a_live_owner_by_itself(tmp_path, sleeper):
    """acquire_lock alone (without claim_run_dir's early check): the lock of a live owner is never taken over."""
    folder = tmp_path / "run"
    folder.mkdir()
    rec = {"pid": sleeper.pid, "host": socket.gethostname(), "start": "earlier",
           "identity": process_identity(sleeper.pid)}
    (folder / LOCK).write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match=f"in use by the running process {sleeper.pid}"):
        acquire_lock(folder)
    assert json.loads((folder / LOCK).read_text()) == rec


def test_overwrite_never_moves_a_live_run_aside(tmp_path, sleeper):
    """claim_run_dir's early check alone: a folder whose run is live is refused before --overwrite moves anything
    (moving it would take the live run's lock along and let both runs write)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "log.jsonl").write_text('{"kind": "train", "step": 1}\n')
    rec = {"pid": sleeper.pid, "host": socket.gethostname(), "start": "earlier",
           "identity": process_identity(sleeper.pid)}
    (folder / LOCK).write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match=f"in use by the running process {sleeper.pid}"):
        claim_run_dir(folder, None, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing moved aside
    assert json.loads((folder / LOCK).read_text()) == rec and (folder / "log.jsonl").exists()


def test_a_lock_of_another_host_is_refused_and_ours_is_released(tmp_path):
    folder = tmp_path / "run"
    _stale(folder, _dead_pid())
    (folder / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "start": "earlier"}))
    with pytest.raises(ConfigError, match="on host elsewhere"):
        acquire_lock(folder)
    (folder / LOCK).unlink()
    lock = acquire_lock(folder)
    rec = json.loads((folder / LOCK).read_text())
    assert rec["pid"] == os.getpid() and rec["identity"] == process_identity(os.getpid())
    lock.release()
    assert not (folder / LOCK).exists()
