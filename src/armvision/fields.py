"""Typed, checked dataclass fields: the one place a knob's default, help, choices and range are written.

A config is a plain dataclass whose fields are made with `knob(default, help, choices=..., check=...)`. This module
turns values from YAML or the command line into the field's type (`coerce`), refusing silent conversions, and checks
them (`why_invalid`, `validate`); the cli package turns the same metadata into flags. No argparse here.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from .argcheck import Check
from .errors import ConfigError


def knob(default: Any, help: str, choices: Optional[Iterable] = None, check: Optional[Check] = None,
         flags: tuple[str, ...] = ()) -> Any:
    """A config field: default, help text, allowed choices, `check(value) -> None | why it is invalid`, and the
    flag spellings when they are not `--field-name` (the first is the main one)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "check": check,
            "flags": tuple(flags)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field (calling its factory)."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def alternatives(tp: Any) -> tuple[list[Any], bool]:
    """([the non-None types of a Union, or tp], optional?)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = list(typing.get_args(tp))
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, tuple)


def _kind(tp: Any) -> str:
    if is_list(tp):
        return f"list of {typing.get_args(tp)[0].__name__}"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` (from YAML or a flag) as type `tp`; ConfigError naming `where` when it is not one."""
    kinds, optional = alternatives(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{where}: cannot be empty")
    for kind in kinds:
        try:
            if is_list(kind):
                seq = value.replace(",", " ").split() if isinstance(value, str) else value
                if not isinstance(seq, (list, tuple)):
                    raise TypeError(value)
                return [_scalar(typing.get_args(kind)[0], v) for v in seq]
            return _scalar(kind, value)
        except (TypeError, ValueError):
            continue
    raise ConfigError(f"{where} is not a valid {' or '.join(_kind(k) for k in kinds)}") from None


def _scalar(kind: type, value: Any) -> Any:
    """`value` as `kind`, refusing silent conversions: a YAML `true` is not the number 1, 2.5 is not an int."""
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no"):
            return False
        raise ValueError(value)
    if isinstance(value, bool) or isinstance(value, (list, tuple, dict)):
        raise TypeError(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if kind is int and isinstance(value, str):
        return int(value.strip())
    if kind is str and not isinstance(value, str):
        raise TypeError(value)
    return kind(value)


def why_invalid(f: dataclasses.Field, value: Any) -> Optional[str]:
    """Why `value` does not fit field `f` (its choices, its check), or None. None values are not checked."""
    if value is None:
        return None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        return f"choose one of {', '.join(map(str, choices))}"
    check = f.metadata.get("check")
    return check(value) if check is not None else None


def validate(obj: Any, prefix: str = "") -> None:
    """Check every field of the dataclass `obj` (and of dataclasses nested in it); ConfigError on the first bad one."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            validate(v, f"{prefix}{f.name}.")
            continue
        why = why_invalid(f, v)
        if why:
            raise ConfigError(f"{prefix}{f.name}={v!r}: {why}")


def unknown_key(source: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for a key that is no field: names the closest known one."""
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{source}: unknown key {key!r}{hint}")


def load_yaml(path: str | Path, flag: str = "--config") -> dict[str, Any]:
    """A YAML mapping from `path`; ConfigError (naming `flag` and the file) when missing, invalid or not a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{flag} {path}: not valid YAML ({e})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{flag} {path}: expected a mapping of option: value, got {type(values).__name__}")
    return values
