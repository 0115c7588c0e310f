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
from typing import Any, Optional, Union

import yaml

from ..errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SIZES = ("tiny", "small", "base", "large", "huge")


def _f(default: Any, help: str, choices: Optional[tuple] = None, **kw) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainConfig:
    """Knobs shared by pretraining and finetuning."""

    # data
    data: Optional[str] = _f(None, "ImageFolder root with train/ and val/ (default: the embedded digits)")
    strict_data: bool = _f(False, "fail before training if any image in --data cannot be decoded")
    num_workers: int = _f(8, "data-loading worker processes per training process")
    mean: list[float] = _f([0.485, 0.456, 0.406], "normalisation mean (ImageNet)")
    std: list[float] = _f([0.229, 0.224, 0.225], "normalisation std (ImageNet)")
    # model
    model: str = _f("base", "model size", SIZES)
    embed_dim: Optional[int] = _f(None, "override the width of --model")
    depth: Optional[int] = _f(None, "override the depth of --model")
    img_size: int = _f(224, "input resolution")
    patch_size: int = _f(16, "patch size in pixels")
    drop_path: float = _f(0.0, "stochastic depth rate")
    # optimisation
    epochs: int = _f(100, "training epochs")
    warmup_epochs: float = _f(5.0, "linear warmup epochs (per-iteration schedule)")
    batch_size: int = _f(64, "images per process per step (effective batch = this x accum_iter x processes)")
    accum_iter: int = _f(1, "gradient accumulation steps")
    blr: float = _f(5e-4, "base learning rate: lr = blr * effective batch / 256")
    lr: Optional[float] = _f(None, "absolute learning rate (overrides --blr)")
    min_lr: float = _f(0.0, "lr at the end of the cosine")
    weight_decay: float = _f(0.05, "AdamW weight decay (none on biases, norms, embeddings)")
    betas: list[float] = _f([0.9, 0.999], "AdamW betas")
    clip_grad: Optional[float] = _f(None, "clip the gradient norm to this value")
    precision: str = _f("auto", "auto: bf16 on CUDA with bf16, fp16 + grad scaler on older CUDA, fp32 on CPU",
                        PRECISIONS)
    # run
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    seed: int = _f(0, "random seed")
    fsdp: bool = _f(False, "shard parameters with FSDP (for the large and huge models, under torchrun)")
    output: str = _f("runs/train", "output folder: config, log.jsonl, TensorBoard events, checkpoints")
    resume: Optional[str] = _f(None, "checkpoint to continue from, or 'auto' for OUTPUT/checkpoint-last.pth if any")
    max_steps: Optional[int] = _f(None, "stop after this many optimizer steps (the schedule is shortened to match)")
    save_every: int = _f(1000, "also write checkpoint-last.pth every N optimizer steps (0: only each epoch)")
    log_every: int = _f(20, "write a log.jsonl line every N optimizer steps")
    eval_every: int = _f(1, "evaluate on val every N epochs (and always at the end)")
    tensorboard: bool = _f(True, "write TensorBoard events to OUTPUT/tb")
    progress: bool = _f(True, "show a progress bar on a terminal")


@dataclass
class PretrainConfig(TrainConfig):
    """ARM pretraining; the defaults are the reference recipe (ARM_SPEC.md)."""

    img_size: int = _f(192, "input resolution")
    epochs: int = _f(1600, "training epochs")
    warmup_epochs: float = _f(40.0, "linear warmup epochs")
    blr: float = _f(1.5e-4, "base learning rate: lr = blr * effective batch / 256")
    betas: list[float] = _f([0.9, 0.95], "AdamW betas")
    clip_grad: Optional[float] = _f(3.0, "clip the gradient norm to this value")
    output: str = _f("runs/pretrain", "output folder")
    min_scale: float = _f(0.2, "RandomResizedCrop minimum scale")
    cluster_size: int = _f(4, "cluster side in patches (4: clusters of 4x4 patches)")
    ordering: str = _f("row", "cluster order", ("row", "column", "row_reverse", "column_reverse", "random"))
    order_seed: int = _f(0, "seed of the random cluster order")
    decoder_embed_dim: int = _f(512, "decoder width")
    decoder_depth: int = _f(4, "decoder blocks")
    decoder_num_heads: Optional[int] = _f(None, "decoder heads (default width / 64)")
    feature_layers: Optional[list[int]] = _f(None, "1-based encoder layers fed to the decoder (one per decoder block)")
    target: str = _f("norm_pixel", "prediction target", ("norm_pixel", "pixel"))
    method: str = _f("arm", "pretraining method: ARM, or the MAE baseline", ("arm", "mae"))
    mask_ratio: float = _f(0.75, "MAE only: fraction of patches masked")


@dataclass
class FinetuneConfig(TrainConfig):
    """Classification finetuning; the defaults are the reference recipe for the base model."""

    init: Optional[str] = _f(None, "pretraining checkpoint to start from (ours or the reference's)")
    num_classes: Optional[int] = _f(None, "classes (default: the number of class folders)")
    label_fraction: float = _f(1.0, "train on this fraction of the labelled images (stratified, fixed subset)")
    global_pool: bool = _f(False, "mean-pool the tokens instead of using the cls token")
    drop_path: float = _f(0.1, "stochastic depth rate")
    min_lr: float = _f(1e-6, "lr at the end of the cosine")
    layer_decay: float = _f(0.65, "layer-wise lr decay (1: none)")
    ema: bool = _f(True, "keep an exponential moving average of the weights")
    ema_decay: float = _f(0.99992, "EMA decay per step")
    mixup: float = _f(0.8, "mixup alpha (0: off)")
    cutmix: float = _f(1.0, "cutmix alpha (0: off)")
    smoothing: float = _f(0.1, "label smoothing")
    auto_augment: Optional[str] = _f("rand-m9-mstd0.5-inc1", "timm RandAugment policy ('' or none: off)")
    reprob: float = _f(0.25, "random erasing probability")
    min_scale: float = _f(0.08, "RandomResizedCrop minimum scale")
    hflip: float = _f(0.5, "horizontal flip probability")
    crop_pct: float = _f(0.875, "eval: resize to img_size / crop_pct then center-crop")
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


def _coerce(name: str, value: Any, tp: Any, source: str) -> Any:
    inner, optional = _base_type(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{source}: {name} cannot be empty")
    try:
        if typing.get_origin(inner) is list:
            (item,) = typing.get_args(inner)
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split()]
            return [item(v) for v in value]
        if inner is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            return bool(value)
        if inner is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return inner(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name}={value!r} is not a valid {getattr(inner, '__name__', inner)}") from None


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build `cls` from defaults updated by `values`; unknown keys and bad values raise ConfigError."""
    hints = _hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in names:
            close = difflib.get_close_matches(name, list(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        kwargs[name] = _coerce(name, value, hints[name], source)
        choices = names[name].metadata.get("choices")
        if choices and kwargs[name] not in choices:
            raise ConfigError(f"{source}: {name}={kwargs[name]!r}; choose one of {', '.join(map(str, choices))}")
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
    values.update({k: v for k, v in vars(args).items() if k in names})
    return config_from_dict(cls, values, source=f"--config {cfg_path}" if cfg_path else "options")


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
