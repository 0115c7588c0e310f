"""Command-line flags generated from a run config's dataclass fields (and those of the model config it nests).

Each field is one flag: `--field-name` (or the spellings in its metadata, e.g. `--model` for the model's `size`,
`--drop-path` as well as `--drop-path-rate`), typed by the field, with its choices and its help (default shown).
Values are checked when the config is built (range, finiteness), so a bad one is one line naming the flag.
Precedence: defaults <- `--config FILE_OR_PRESET` <- the flags given.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Callable, Iterator, Optional

from ..fields import Layer, alternatives, default_of, is_list
from ..train.config import FinetuneConfig, load_config_file, model_knobs, preset_names

MODEL = "model."  # dest prefix of the nested model's flags


def config_flags(cls: type) -> Iterator[tuple[str, dataclasses.Field, Any, list[str]]]:
    """(dest, field, type, flag spellings) of every flag of `cls`: its training fields, then every model knob of the
    model classes it can nest (`dest` = "model.<name>")."""
    hints = typing.get_type_hints(cls)
    for f in cls.training_fields():
        yield f.name, f, hints[f.name], _spellings(f)
    training = {f.name for f in cls.training_fields()}
    for name, (f, tp) in model_knobs(cls).items():
        if name not in training and name != "kind":
            yield MODEL + name, f, tp, _spellings(f)


def _spellings(f: dataclasses.Field) -> list[str]:
    return list(f.metadata.get("flags") or ["--" + f.name.replace("_", "-")])


def _only_for(cls: type, name: str) -> str:
    """' (ARM only)' for a model knob that some `method`s' model configs lack."""
    having = [m for m, mcls in cls.MODELS.items() if name in {f.name for f in dataclasses.fields(mcls)}]
    return "" if len(having) == len(cls.MODELS) else f" ({', '.join(m.upper() for m in having)} only)"


def help_text(text: str, note: str, default: Any) -> str:
    """A flag's help: its text, the methods it applies to, and its default unless the text already says it (or
    there is none to say: "(default: None)" tells nothing)."""
    shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    said = "default" in text or default is None
    return f"{text}{note}" + ("" if said else f" (default: {shown})")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """`--config` and one flag per field (defaults are applied later, so given flags can override the file)."""
    parser.add_argument("--config", metavar="YAML", help="YAML file, or the name of a shipped preset ("
                        f"{', '.join(preset_names())}); flags given here override it")
    defaults = dataclasses.asdict(cls())
    model_defaults = defaults["model"]
    groups = {False: parser.add_argument_group("training"),
              True: parser.add_argument_group(f"model ({' / '.join(m.__name__ for m in cls.MODELS.values())})")}
    for dest, f, tp, flags in config_flags(cls):
        name = dest.removeprefix(MODEL)
        if dest.startswith(MODEL):
            default = model_defaults.get(name, default_of(f))
            note = _only_for(cls, name)
        else:
            default, note = defaults.get(name, default_of(f)), ""
        group = groups[dest.startswith(MODEL)]
        kw: dict[str, Any] = dict(dest=dest, default=argparse.SUPPRESS,
                                  help=help_text(f.metadata.get("help", ""), note, default))
        inner = alternatives(tp)[0][0]
        if inner is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
        elif is_list(inner):
            group.add_argument(*flags, nargs="+", metavar="V", **kw)
        elif f.metadata.get("choices"):
            group.add_argument(*flags, choices=f.metadata["choices"], **kw)
        else:
            group.add_argument(*flags, metavar=name.upper(), **kw)


def _given(cls: type, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """(the flags given as a nested dict, dotted key -> main flag spelling)."""
    given: dict[str, Any] = {}
    spelling: dict[str, str] = {}
    values = vars(args)
    for dest, _, _, flags in config_flags(cls):
        spelling[dest] = flags[0]
        if dest in values:
            if dest.startswith(MODEL):
                given.setdefault("model", {})[dest.removeprefix(MODEL)] = values[dest]
            else:
                given[dest] = values[dest]
    return given, spelling


def resolve_config(cls: type, args: argparse.Namespace) -> Any:
    """defaults <- --config YAML (or preset) <- flags given on the command line."""
    layers = [load_config_file(args.config)] if getattr(args, "config", None) else []
    given, spelling = _given(cls, args)

    def flag_where(key: str, value: Any) -> str:
        shown = " ".join(map(str, value)) if isinstance(value, list) else value if value != "" else "''"
        return f"{spelling.get(key, key)} {shown}"

    layers.append(Layer(given, "options", flag_where))
    if cls is FinetuneConfig:  # the --init checkpoint's architecture beneath the file and the flags
        from ..train.finetune import finetune_config

        return finetune_config(layers)
    return cls.from_layers(layers)


def run_training(cls: type, args: argparse.Namespace, train: Callable[[Any], Optional[dict]]
                 ) -> tuple[Any, Optional[dict]]:
    """(config, summary) of `train` on the config the command line gives, on every torchrun process (summary: None
    on the processes that do not report)."""
    from ..train.distributed import run_distributed

    cfg = resolve_config(cls, args)
    return cfg, run_distributed(train, cfg)
