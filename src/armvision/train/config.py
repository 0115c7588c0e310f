"""Run configuration as dataclasses, filled from defaults <- `--config run.yaml` <- command-line flags.

Each field becomes a flag (`embed_dim` -> `--embed-dim`); `help` and `choices` live in the field metadata.
The resolved config is written as `config.yaml` next to the checkpoints and stored (as a plain dict) in them.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

from ..argcheck import device, items, number
from ..errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SIZES = ("tiny", "small", "base", "large", "huge")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb threshold


def _f(default: Any, help: str, choices: Optional[tuple] = None, check: Optional[Callable] = None, **kw) -> Any:
    """A config field: default, help text, allowed choices, and `check(value) -> None | why it is invalid`."""
    meta = {"help": help, "choices": choices, "check": check}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


POS, NONNEG = number(1), number(0)  # integers >= 1, >= 0
POS_F, NONNEG_F, PROB = number(0, lo_open=True), number(0), number(0, 1)


@dataclass
class TrainConfig:
    """Knobs shared by pretraining and finetuning."""

    # data
    data: Optional[str] = _f(None, "ImageFolder root with train/ and val/ (default: the embedded digits)")
    strict_data: bool = _f(False, "fail before training if any image in --data cannot be decoded")
    max_image_pixels: int = _f(DEFAULT_MAX_PIXELS, "skip (and name) images with more pixels than this", check=POS)
    num_workers: int = _f(8, "data-loading worker processes per training process", check=NONNEG)
    mean: list[float] = _f([0.485, 0.456, 0.406], "normalisation mean, 3 values (ImageNet)",
                           check=items(3, number()))
    std: list[float] = _f([0.229, 0.224, 0.225], "normalisation std, 3 values > 0 (ImageNet)",
                          check=items(3, POS_F))
    # model
    model: str = _f("base", "model size", SIZES)
    embed_dim: Optional[int] = _f(None, "override the width of --model", check=POS)
    depth: Optional[int] = _f(None, "override the depth of --model", check=POS)
    img_size: int = _f(224, "input resolution", check=POS)
    patch_size: int = _f(16, "patch size in pixels", check=POS)
    drop_path: float = _f(0.0, "stochastic depth rate", check=number(0, 1, hi_open=True))
    # optimisation
    epochs: int = _f(100, "training epochs", check=POS)
    warmup_epochs: float = _f(5.0, "linear warmup epochs (per-iteration schedule)", check=NONNEG_F)
    batch_size: int = _f(64, "images per process per step (effective batch = this x accum_iter x processes)",
                         check=POS)
    accum_iter: int = _f(1, "gradient accumulation steps", check=POS)
    blr: float = _f(5e-4, "base learning rate: lr = blr * effective batch / 256", check=POS_F)
    lr: Optional[float] = _f(None, "absolute learning rate (overrides --blr)", check=POS_F)
    min_lr: float = _f(0.0, "lr at the end of the cosine", check=NONNEG_F)
    weight_decay: float = _f(0.05, "AdamW weight decay (none on biases, norms, embeddings)", check=NONNEG_F)
    betas: list[float] = _f([0.9, 0.999], "AdamW betas, 2 values in [0, 1)",
                            check=items(2, number(0, 1, hi_open=True)))
    clip_grad: Optional[float] = _f(None, "clip the gradient norm to this value", check=POS_F)
    precision: str = _f("auto", "auto: bf16 on CUDA with bf16, fp16 + grad scaler on older CUDA, fp32 on CPU",
                        PRECISIONS)
    max_bad_steps: int = _f(0, "skip up to N optimizer steps whose loss or gradients are not finite, then stop "
                               "(0: stop at the first)", check=NONNEG)
    # run
    device: str = _f("auto", "auto, cpu, cuda or cuda:N", check=device)
    seed: int = _f(0, "random seed", check=number(0, 2**63 - 1))
    fsdp: bool = _f(False, "shard parameters with FSDP (for the large and huge models, under torchrun)")
    output: str = _f("runs/train", "output folder: config, log.jsonl, TensorBoard events, checkpoints")
    resume: Optional[str] = _f(None, "checkpoint to continue from, or 'auto' for OUTPUT/checkpoint-last.pth if any")
    overwrite: bool = _f(False, "start afresh in an OUTPUT that holds a run: the old run is moved aside to "
                                "OUTPUT.old-DATE-TIME (never deleted)")
    force: bool = _f(False, "resume even if batch size, seed or learning rate differ from the checkpoint's run")
    max_steps: Optional[int] = _f(None, "stop after this many optimizer steps (the schedule is shortened to match)",
                                  check=POS)
    save_every: int = _f(1000, "also write checkpoint-last.pth every N optimizer steps (0: only each epoch)",
                         check=NONNEG)
    log_every: int = _f(20, "write a log.jsonl line every N optimizer steps", check=POS)
    eval_every: int = _f(1, "evaluate on val every N epochs (and always at the end)", check=POS)
    tensorboard: bool = _f(True, "write TensorBoard events to OUTPUT/tb")
    progress: bool = _f(True, "show a progress bar on a terminal")
    dist_timeout: float = _f(1800.0, "torchrun: seconds a collective (or joining the group) may wait for the other "
                                     "processes before the job fails", check=POS_F)
    stall_warning: float = _f(300.0, "torchrun: warn when no step has finished for this many seconds",
                              check=POS_F)

    def __post_init__(self) -> None:
        """Configs built in Python are held to the same ranges as the command line's."""
        for f in dataclasses.fields(self):
            v, check, choices = getattr(self, f.name), f.metadata.get("check"), f.metadata.get("choices")
            why = check(v) if check is not None and v is not None else None
            if why is None and choices and v not in choices:
                why = f"choose one of {', '.join(map(str, choices))}"
            if why:
                raise ConfigError(f"{f.name}={v!r}: {why}")


@dataclass
class PretrainConfig(TrainConfig):
    """ARM pretraining; the defaults are the reference recipe (ARM_SPEC.md)."""

    img_size: int = _f(192, "input resolution", check=POS)
    epochs: int = _f(1600, "training epochs", check=POS)
    warmup_epochs: float = _f(40.0, "linear warmup epochs", check=NONNEG_F)
    blr: float = _f(1.5e-4, "base learning rate: lr = blr * effective batch / 256", check=POS_F)
    betas: list[float] = _f([0.9, 0.95], "AdamW betas, 2 values in [0, 1)", check=items(2, number(0, 1, hi_open=True)))
    clip_grad: Optional[float] = _f(3.0, "clip the gradient norm to this value", check=POS_F)
    output: str = _f("runs/pretrain", "output folder")
    min_scale: float = _f(0.2, "RandomResizedCrop minimum scale, in (0, 1]", check=number(0, 1, lo_open=True))
    cluster_size: int = _f(4, "cluster side in patches (4: clusters of 4x4 patches)", check=POS)
    ordering: str = _f("row", "cluster order", ("row", "column", "row_reverse", "column_reverse", "random"))
    order_seed: int = _f(0, "seed of the random cluster order", check=NONNEG)
    decoder_embed_dim: int = _f(512, "decoder width", check=POS)
    decoder_depth: int = _f(4, "decoder blocks", check=POS)
    decoder_num_heads: Optional[int] = _f(None, "decoder heads (default width / 64)", check=POS)
    feature_layers: Optional[list[int]] = _f(None, "1-based encoder layers fed to the decoder (one per decoder block)",
                                             check=items(None, POS))
    target: str = _f("norm_pixel", "prediction target", ("norm_pixel", "pixel"))
    method: str = _f("arm", "pretraining method: ARM, or the MAE baseline", ("arm", "mae"))
    mask_ratio: float = _f(0.75, "MAE only: fraction of patches masked, in (0, 1)",
                           check=number(0, 1, lo_open=True, hi_open=True))


@dataclass
class FinetuneConfig(TrainConfig):
    """Classification finetuning; the defaults are the reference recipe for the base model."""

    init: Optional[str] = _f(None, "pretraining checkpoint to start from (ours or the reference's)")
    num_classes: Optional[int] = _f(None, "classes (default: the number of class folders)", check=POS)
    label_fraction: float = _f(1.0, "train on this fraction of the labelled images (stratified, fixed subset)",
                               check=number(0, 1, lo_open=True))
    global_pool: bool = _f(False, "mean-pool the tokens instead of using the cls token")
    drop_path: float = _f(0.1, "stochastic depth rate", check=number(0, 1, hi_open=True))
    min_lr: float = _f(1e-6, "lr at the end of the cosine", check=NONNEG_F)
    layer_decay: float = _f(0.65, "layer-wise lr decay (1: none)", check=number(0, 1, lo_open=True))
    ema: bool = _f(True, "keep an exponential moving average of the weights")
    ema_decay: float = _f(0.99992, "EMA decay per step", check=PROB)
    mixup: float = _f(0.8, "mixup alpha (0: off)", check=NONNEG_F)
    cutmix: float = _f(1.0, "cutmix alpha (0: off)", check=NONNEG_F)
    smoothing: float = _f(0.1, "label smoothing", check=number(0, 1, hi_open=True))
    auto_augment: Optional[str] = _f("rand-m9-mstd0.5-inc1", "timm RandAugment policy ('' or none: off)")
    reprob: float = _f(0.25, "random erasing probability", check=PROB)
    min_scale: float = _f(0.08, "RandomResizedCrop minimum scale, in (0, 1]", check=number(0, 1, lo_open=True))
    hflip: float = _f(0.5, "horizontal flip probability", check=PROB)
    crop_pct: float = _f(0.875, "eval: resize to img_size / crop_pct then center-crop", check=number(0, 1, lo_open=True))
    output: str = _f("runs/finetune", "output folder")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of Optional[X] / X | None."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _coerce(name: str, value: Any, tp: Any, where: str) -> Any:
    inner, optional = _base_type(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{where}: cannot be empty")
    kind = getattr(inner, "__name__", str(inner))
    try:
        if typing.get_origin(inner) is list:
            (item,) = typing.get_args(inner)
            kind = f"list of {item.__name__}"
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split()]
            if not isinstance(value, (list, tuple)):
                raise TypeError(value)
            return [_scalar(item, v) for v in value]
        return _scalar(inner, value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} is not a valid {kind}") from None


def _scalar(kind: type, value: Any) -> Any:
    """`value` as `kind`, refusing silent conversions: a YAML `true` is not the number 1, 2.5 is not an int."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no"):
            return False
        raise ValueError(value)
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise TypeError(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if kind is int and isinstance(value, str):
        return int(value.strip())
    if kind is str and not isinstance(value, str):
        raise TypeError(value)
    return kind(value)


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config", flags: frozenset = frozenset()
                     ) -> Any:
    """Build `cls` from defaults updated by `values`; unknown keys and bad values raise ConfigError.

    Every value is type-checked, range-checked (finite, positive, ...) and choice-checked. Error messages name the
    flag and the value for keys in `flags` (given on the command line), else `source: key=value`.
    """
    hints = _hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in names:
            close = difflib.get_close_matches(name, list(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        shown = " ".join(map(str, value)) if isinstance(value, list) and name in flags else value
        where = f"{_flag(name)} {shown}" if name in flags else f"{source}: {name}={value!r}"
        v = _coerce(name, value, hints[name], where)
        choices = names[name].metadata.get("choices")
        if choices and v not in choices:
            raise ConfigError(f"{where}: choose one of {', '.join(map(str, choices))}")
        check = names[name].metadata.get("check")
        why = check(v) if check is not None and v is not None else None
        if why:
            raise ConfigError(f"{where}: {why}")
        kwargs[name] = v
    return cls(**kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path}: not valid YAML ({e})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option: value, got {type(values).__name__}")
    return values


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field (defaults are applied later, so given flags can override the --config file)."""
    parser.add_argument("--config", metavar="YAML", help="YAML file of options (flags given here override it)")
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        inner, _ = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        if inner is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(inner) is list:
            parser.add_argument(flag, nargs="+", metavar="V", **kw)
        else:
            if f.metadata.get("choices"):
                kw["choices"] = f.metadata["choices"]
            parser.add_argument(flag, metavar=f.name.upper() if not kw.get("choices") else None, **kw)


def resolve_config(cls: type, args: argparse.Namespace) -> Any:
    """defaults <- --config YAML <- flags given on the command line."""
    values: dict[str, Any] = {}
    cfg_path = getattr(args, "config", None)
    if cfg_path:
        values.update(load_yaml(cfg_path))
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names}
    values.update(given)
    return config_from_dict(cls, values, source=f"--config {cfg_path}" if cfg_path else "options",
                            flags=frozenset(given))


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
