"""Value checks shared by configs and commands: ranges and finiteness of numbers, device names, output paths.

Each check returns None for a good value or a short reason ("must be >= 1"); config fields name their check in
their metadata (`armvision.fields.knob`), and `armvision.cli.argtypes.argtype` turns one into an argparse `type=`.
Output paths are checked for writability before any work starts (`check_output_dir`, `check_output_file`).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import ConfigError

Check = Callable[[Any], Optional[str]]


def number(lo: Optional[float] = None, hi: Optional[float] = None, lo_open: bool = False,
           hi_open: bool = False) -> Check:
    """A finite number in [lo, hi] (or (lo, hi) with the *_open flags); either bound may be None."""
    def check(v: Any) -> Optional[str]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "must be a number"
        if not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo:g}" + (f" and {'<' if hi_open else '<='} {hi:g}"
                                                                      if hi is not None else "")
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {'<' if hi_open else '<='} {hi:g}" + (f" and {'>' if lo_open else '>='} {lo:g}"
                                                                      if lo is not None else "")
        return None
    return check


def items(n: Optional[int], each: Check) -> Check:
    """A list of exactly `n` values (any length when None, but at least one), each passing `each`."""
    def check(v: Any) -> Optional[str]:
        if not isinstance(v, (list, tuple)) or not v:
            return "must be a list of values"
        if n is not None and len(v) != n:
            return f"needs exactly {n} values, got {len(v)}"
        for x in v:
            why = each(x)
            if why:
                return f"each value {why}"
        return None
    return check


def text(if_omitted: str = "") -> Check:
    """A non-empty text (a path, a name): an empty one can only be a mistake (an unset shell variable, say);
    `if_omitted` says what leaving the option out does instead."""
    def check(v: Any) -> Optional[str]:
        if not isinstance(v, str) or not v.strip():
            return "cannot be empty" + (f" (leave it out {if_omitted})" if if_omitted else "")
        if "\x00" in v:
            return "cannot hold a NUL character"
        return None
    return check


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device(v: Any) -> Optional[str]:
    return None if isinstance(v, str) and _DEVICE.match(v) else "choose auto, cpu, mps, cuda or cuda:N"


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, flag: str, shown: Path) -> None:
    """Create and remove a small file in `folder`: the only reliable test (root ignores permission bits)."""
    probe = folder / f".armvision-write-test-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"x")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{flag} {shown}: cannot write there ({e.strerror or e})") from None


def check_output_dir(path: str | os.PathLike, flag: str, create: bool = True) -> Path:
    """Make sure `path` is (or can become) a writable folder, before any work starts; returns it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: exists and is not a folder; give a folder path")
    anc = _existing_ancestor(path)
    if not anc.is_dir():
        raise ConfigError(f"{flag} {path}: {anc} is a file, not a folder")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{flag} {path}: cannot create the folder ({e.strerror or e})") from None
        _probe_writable(path, flag, path)
    else:
        _probe_writable(anc, flag, path)
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Make sure the file `path` can be written (its folder exists or can be made, it is not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file name")
    anc = _existing_ancestor(path.parent)
    if not anc.is_dir():
        raise ConfigError(f"{flag} {path}: {anc} is a file, not a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path}: the file is not writable")
    _probe_writable(anc, flag, path)
    return path

