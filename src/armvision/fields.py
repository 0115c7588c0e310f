"""Typed, checked dataclass fields: the one place a knob's default, help, choices, range and conversion are written.

A config is a plain dataclass (a `Knobs`) whose fields are made with `knob(default, help, choices=..., check=...)`.
Building one settles it (`settle`): each value is converted (a field's `convert`, e.g. an image size to
(height, width)) and checked (its type, choices and `check`), so a config is valid however it was made, and what
uses it trusts it. A mapping (a YAML or JSON file, a checkpoint's config, the flags given) becomes a config through
`config_from_dict` (several layers of them, later ones winning: `Knobs.from_layers`): each value is first turned into
the field's type (`coerce`, refusing silent conversions), and an error names where the value came from (a flag, or
`file: key=value`). `load_mapping` reads a YAML or JSON file with one-line errors. No argparse here.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Optional, Union

from .argcheck import Check
from .errors import ConfigError

MAX_CONFIG_BYTES = 16 * 2**20  # a config file larger than this is not one (and would be read whole)


def knob(default: Any, help: str, choices: Optional[Iterable] = None, check: Optional[Check] = None,
         flags: tuple[str, ...] = (), convert: Optional[Callable[[Any], Any]] = None) -> Any:
    """A config field: default, help text, allowed choices, `check(value) -> None | why it is invalid`, the flag
    spellings when they are not `--field-name` (the first is the main one), and `convert(value)`, the one
    normaliser of the value (raising ValueError with the reason when it cannot)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "check": check,
            "flags": tuple(flags), "convert": convert}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field (calling its factory)."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@functools.lru_cache(maxsize=None)
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def knobs_of(cls: type) -> dict[str, dataclasses.Field]:
    """name -> field of the knobs of a config class (its fields made by `knob`)."""
    return {f.name: f for f in dataclasses.fields(cls) if "help" in f.metadata}


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


# ---- values ---------------------------------------------------------------------------------------------------
def as_hw(value: Any) -> tuple[int, int]:
    """An image size: one number (a square), or [height, width], as (height, width): the one normaliser of image
    sizes (configs, layers, transforms and exports call it)."""
    if isinstance(value, (list, tuple)) and len(value) in (1, 2):
        h, w = value[0], value[-1]
    elif isinstance(value, (list, tuple)):
        raise ValueError("give one number or [height, width]")
    else:
        h = w = value
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("must be whole numbers of pixels")
    return int(h), int(w)


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` (from a file or a flag) as type `tp`; ConfigError naming `where` when it is not one. Only the texts
    "none" and "null" mean None (for optional fields); an empty text stays an (invalid) empty text."""
    kinds, optional = alternatives(tp)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where}: cannot be empty")
    for kind in kinds:
        try:
            if is_list(kind):
                seq = value.replace(",", " ").split() if isinstance(value, str) else value
                seq = seq if isinstance(seq, (list, tuple)) else [seq]  # one value: a list of one
                return [_scalar(typing.get_args(kind)[0], v) for v in seq]
            return _scalar(kind, value)
        except (TypeError, ValueError, OverflowError):
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
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if kind is int and isinstance(value, str):
        return int(value.strip())
    if kind is str and not isinstance(value, str):
        raise TypeError(value)
    return kind(value)


def type_problem(value: Any, tp: Any) -> Optional[str]:
    """Why `value` is not of type `tp` (a knob's type: a scalar, an optional one, a list of scalars), or None."""
    kinds, optional = alternatives(tp)
    if value is None:
        return None if optional else "cannot be empty"
    for kind in kinds:
        if is_list(kind):
            inner = typing.get_args(kind)[0]
            if isinstance(value, (list, tuple)) and all(_is_a(v, inner) for v in value):
                return None
        elif _is_a(value, kind):
            return None
    return f"must be a {' or '.join(_kind(k) for k in kinds)}"


def _is_a(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def why_invalid(f: dataclasses.Field, value: Any) -> Optional[str]:
    """Why `value` does not fit field `f` (its choices, its check), or None. None values are not checked."""
    if value is None:
        return None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        return f"choose one of {', '.join(map(str, choices))}"
    check = f.metadata.get("check")
    return check(value) if check is not None else None


class FieldError(ConfigError):
    """A value that does not fit its field: `key` (dotted), `value`, `why`; the message is "key=value: why"."""

    def __init__(self, key: str, value: Any, why: str):
        super().__init__(f"{key}={value!r}: {why}")
        self.key, self.value, self.why = key, value, why

    def within(self, prefix: str) -> "FieldError":
        return FieldError(prefix + self.key, self.value, self.why)


def settle(obj: Any) -> None:
    """Convert and check every knob of the config `obj` in place: its type, its `convert`, its choices and check.
    FieldError on the first bad one. (Nested configs settled themselves when they were built.)"""
    hints = type_hints(type(obj))
    for name, f in knobs_of(type(obj)).items():
        value = getattr(obj, name)
        convert = f.metadata.get("convert")
        if convert is not None and value is not None:
            try:
                value = convert(value)
            except (TypeError, ValueError) as e:
                raise FieldError(name, value, str(e) or "not a valid value") from None
            setattr(obj, name, value)
        why = type_problem(value, hints[name]) or why_invalid(f, value)
        if why:
            raise FieldError(name, value, why)


def unknown_key(source: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for a key that is no field: names the closest known one."""
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{source}: unknown key {key!r}{hint}")


# ---- from mappings to configs ---------------------------------------------------------------------------------
Where = Callable[[str, Any], str]  # (dotted key, value) -> how an error names it: a flag, or `file: key=value`


class Layer(NamedTuple):
    """One source of values: a mapping, its name for errors ("--config FILE", "options", a checkpoint), and how an
    error names one of its values (default: `source: key=value`)."""
    values: Any
    source: str
    where: Optional[Where] = None

    def name(self, key: str, value: Any) -> str:
        return self.where(key, value) if self.where else f"{self.source}: {key}={value!r}"


def mapping(values: Any, source: str) -> Mapping:
    """`values` if it is a mapping; else the one-line error naming `source`."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of option: value, got {type(values).__name__}")
    return values


def read_layer(cls: type, layer: Layer, prefix: str = "", skip: Iterable[str] = ()) -> dict[str, Any]:
    """The knobs of `cls` that `layer` gives, each coerced to its field's type ('-' or '_' in keys); unknown keys
    raise ConfigError ("did you mean")."""
    known, hints, skip = knobs_of(cls), type_hints(cls), set(skip)
    out: dict[str, Any] = {}
    for key, value in mapping(layer.values, layer.source).items():
        name = str(key).replace("-", "_")
        if name in skip:
            continue
        if name not in known:
            raise unknown_key(layer.source, prefix + str(key), [prefix + k for k in known])
        out[name] = coerce(value, hints[name], layer.name(prefix + name, value))
    return out


Given = dict[str, tuple[Layer, Any]]  # dotted key -> (the layer that gave the value, the value as given)


def build(cls: type, values: dict[str, Any], given: Given, prefix: str = "") -> Any:
    """`cls(**values)`; a value its field refuses is named as the layer that gave it names it (with the value as
    given), values that do not work together by the file they came from (flags name themselves in the message)."""
    try:
        return cls(**values)
    except FieldError as e:
        if e.key not in given:
            raise ConfigError(str(e.within(prefix))) from None
        layer, raw = given[e.key]
        raise ConfigError(f"{layer.name(prefix + e.key, raw)}: {e.why}") from None
    except ConfigError as e:
        files = list(dict.fromkeys(layer.source for layer, _ in given.values() if layer.where is None))
        raise ConfigError(f"{files[-1]}: {e}" if files and not str(e).startswith(files[-1]) else str(e)) from None


def as_given(values: Mapping) -> dict[str, Any]:
    """A layer's values by field name ('-' in keys as '_'), as given."""
    return {str(k).replace("-", "_"): v for k, v in values.items()}


class Knobs:
    """Base of the config dataclasses: settled (converted and checked) when built, readable from layers."""

    def __post_init__(self) -> None:
        settle(self)
        why = self.inconsistency()
        if why:
            raise ConfigError(why)

    def inconsistency(self) -> Optional[str]:
        """Why the values, each valid alone, do not work together (e.g. an image size the patch does not divide)."""
        return None

    @classmethod
    def implied(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Values that a layer's values imply unless it gives them too (a model size: its width and depth)."""
        return {}

    @classmethod
    def from_layers(cls, layers: Iterable[Layer], prefix: str = "") -> Any:
        """A config from layers over the defaults, later layers winning; errors name the layer of the value."""
        values: dict[str, Any] = {}
        given: Given = {}
        for layer in layers:
            read = read_layer(cls, layer, prefix)
            raw = as_given(layer.values)
            for k, v in {**cls.implied(read), **read}.items():
                values[k], given[k] = v, (layer, raw.get(k, v))
        return build(cls, values, given, prefix)


def config_from_dict(cls: type, values: Any, source: str = "config") -> Any:
    """The one way a mapping (a YAML or JSON file, a checkpoint's config, keyword values) becomes a config of `cls`:
    every value coerced to its field's type and checked there; errors name `source: key=value`."""
    return cls.from_layers([Layer(values, source)])


# ---- files ----------------------------------------------------------------------------------------------------
def read_text(path: str | Path, what: str) -> str:
    """The text of a (UTF-8) file; ConfigError naming `what` (e.g. "--config FILE") when it is missing, a folder,
    too large, unreadable or not text."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what}: file not found")
    if not path.is_file():
        raise ConfigError(f"{what}: is a folder, not a file")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{what}: {size} bytes is too large for a config file (at most {MAX_CONFIG_BYTES})")
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read it ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what}: not a text file (byte {e.start} is not UTF-8)") from None


def parse_yaml(text: str, what: str) -> Any:
    """YAML text -> Python values; one line naming `what`, the problem and its line when it is not YAML."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{what}: not valid YAML ({e.problem or e.context}{at})") from None
    except Exception as e:  # other YAMLErrors, dates out of range, nesting too deep
        raise ConfigError(f"{what}: not valid YAML ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None


def parse_json(text: str, what: str) -> Any:
    """JSON text -> Python values; one line naming `what`, the problem and where when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # numbers too long, nesting too deep
        raise ConfigError(f"{what}: not valid JSON ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None


def load_mapping(path: str | Path, what: str) -> Mapping:
    """The mapping of option: value in a YAML (or JSON, by the .json suffix) file; one ConfigError line naming
    `what` when the file is missing, not text, not YAML / JSON, or not a mapping. An empty YAML file is {}."""
    text = read_text(path, what)
    if str(path).endswith(".json"):
        values = parse_json(text, what)
    else:
        values = parse_yaml(text, what)
        values = {} if values is None else values
    return mapping(values, what)
