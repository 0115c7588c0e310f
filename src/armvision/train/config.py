"""Run configuration: dataclasses that nest the model's config, filled from defaults <- preset / YAML <- flags.

`PretrainConfig` and `FinetuneConfig` hold the training knobs and, under `model`, the model's own dataclass
(`PretrainerConfig`, `MAEConfig` or `ContrastiveConfig` by `method`; `ClassifierConfig`), so a model knob has one name and one default.
The resolved config is written as nested `config.yaml` next to the checkpoints and stored (as a dict) in them.
The flat form of earlier versions (`model: base`, `embed_dim: null`, `drop_path: 0.1`, `cluster_size: 4` at the top)
is still read, from YAML, old checkpoints and keyword arguments: `PretrainConfig(model="tiny", embed_dim=32)`.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Optional, Union

import yaml

from ..argcheck import device, items, number
from ..constants import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError
from ..fileio import atomic_write
from ..fields import alternatives, coerce, knob, load_yaml, type_hints, unknown_key, validate, why_invalid
from ..models.config import ClassifierConfig, ContrastiveConfig, MAEConfig, PretrainerConfig, size_values

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb threshold
LEGACY_KEYS = {"drop_path": "drop_path_rate"}  # flat key of earlier versions -> model field
POS, NONNEG = number(1), number(0)  # integers >= 1, >= 0
POS_F, NONNEG_F, PROB = number(0, lo_open=True), number(0), number(0, 1)
BETAS = items(2, number(0, 1, hi_open=True))
Where = Callable[[str, Any], str]  # (dotted key, value) -> how an error names it


@dataclass
class TrainConfig:
    """Knobs shared by pretraining and finetuning; `model` is the nested model config (see the subclasses)."""

    MODELS: ClassVar[dict[str, type]] = {}  # `method` ("" when there is one kind) -> model config; first: default
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {"size": "base"}  # this recipe's model values over the class defaults

    # data
    data: Optional[str] = knob(None, "DIR with train/ and val/ ImageFolders, webdataset shards (DIR/train/*.tar or "
                               "DIR/train-*.tar), a Hugging Face dataset saved on disk, or embedded:mnist5k (5,000 "
                               "shipped MNIST digits) (default: the embedded 8x8 digits)")
    strict_data: bool = knob(False, "fail before training if any image in --data cannot be decoded")
    max_image_pixels: int = knob(DEFAULT_MAX_PIXELS, "skip (and name) images with more pixels than this", check=POS)
    num_workers: Optional[int] = knob(None, "data-loading worker processes per training process (default: the CPUs "
                                            "this process may use, minus one, at most 8)", check=NONNEG)
    mean: list[float] = knob(list(IMAGENET_MEAN), "normalisation mean, 3 values (ImageNet)", check=items(3, number()))
    std: list[float] = knob(list(IMAGENET_STD), "normalisation std, 3 values > 0 (ImageNet)", check=items(3, POS_F))
    model: Any = None  # the model config (a dataclass of models.config); each subclass gives its default
    # optimisation
    epochs: int = knob(100, "training epochs", check=POS)
    warmup_epochs: float = knob(5.0, "linear warmup epochs (per-iteration schedule)", check=NONNEG_F)
    warmup_steps: Optional[int] = knob(None, "linear warmup in optimizer steps (overrides --warmup-epochs)",
                                       check=NONNEG)
    batch_size: int = knob(64, "images per process per step (effective batch = this x accum_iter x processes)",
                           check=POS)
    accum_iter: int = knob(1, "gradient accumulation steps", check=POS)
    blr: float = knob(5e-4, "base learning rate: lr = blr * effective batch / 256", check=POS_F)
    lr: Optional[float] = knob(None, "absolute learning rate (overrides --blr)", check=POS_F)
    min_lr: float = knob(0.0, "lr at the end of the cosine", check=NONNEG_F)
    weight_decay: float = knob(0.05, "AdamW weight decay (none on biases, norms, embeddings)", check=NONNEG_F)
    betas: list[float] = knob([0.9, 0.999], "AdamW betas, 2 values in [0, 1)", check=BETAS)
    clip_grad: Optional[float] = knob(None, "clip the gradient norm to this value", check=POS_F)
    precision: str = knob("auto", "auto: bf16 on CUDA with bf16, fp16 + grad scaler on older CUDA, fp32 on CPU",
                          PRECISIONS)
    max_bad_steps: int = knob(0, "skip up to N optimizer steps whose loss or gradients are not finite, then stop "
                                 "(0: stop at the first)", check=NONNEG)
    # run
    device: str = knob("auto", "auto, cpu, cuda or cuda:N", check=device)
    seed: int = knob(0, "random seed", check=number(0, 2**63 - 1))
    fsdp: bool = knob(False, "shard parameters with FSDP (for the large and huge models, under torchrun)")
    output: str = knob("runs/train", "output folder: config, log.jsonl, TensorBoard events, checkpoints")
    resume: Optional[str] = knob(None, "checkpoint to continue from, or 'auto' for OUTPUT/checkpoint-last.pth if any")
    overwrite: bool = knob(False, "start afresh in an OUTPUT that holds a run: the old run is moved aside to "
                                  "OUTPUT.old-DATE-TIME (never deleted)")
    force: bool = knob(False, "resume even if batch size, seed or learning rate differ from the checkpoint's run")
    max_steps: Optional[int] = knob(None, "stop after this many optimizer steps (the cosine ends there; a warmup "
                                          "that would fill most of the run is scaled with it)", check=POS)
    fit_recipe: bool = knob(True, "fit the recipe to a short run: an EMA that averages over more than a tenth of the "
                                  "run gets a shorter memory (one line before training says what changed)")
    save_every: int = knob(1000, "also write checkpoint-last.pth every N optimizer steps (0: only each epoch)",
                           check=NONNEG)
    log_every: int = knob(20, "write a log.jsonl line every N optimizer steps", check=POS)
    eval_every: int = knob(1, "evaluate on val every N epochs (and always at the end)", check=POS)
    tensorboard: bool = knob(True, "write TensorBoard events to OUTPUT/tb")
    progress: bool = knob(True, "show progress: a bar on a terminal, a plain line every --log-every steps elsewhere")
    dist_timeout: float = knob(1800.0, "torchrun: seconds a collective (or joining the group) may wait for the "
                                       "other processes before the job fails", check=POS_F)
    stall_warning: float = knob(300.0, "torchrun: warn when no step has finished for this many seconds", check=POS_F)

    def __post_init__(self) -> None:
        """Configs built in Python are held to the same ranges as the command line's."""
        validate(self)

    @classmethod
    def training_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name != "model"]


def _default_model(cls: type, method: str = "") -> Any:
    return build_config_kwargs(cls, [{"method": method}] if method else [{}])["model"]


def _nested_init(cls: type) -> type:
    """Let `cls(...)` take the flat keywords of earlier versions (`model="tiny", embed_dim=32, drop_path=0.1`)
    besides `model=<model config>`; both end as one nested model config."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, **values: Any) -> None:
        init(self, **build_config_kwargs(type(self), [split_layer(type(self), values)]))

    cls.__init__ = __init__
    return cls


@_nested_init
@dataclass
class PretrainConfig(TrainConfig):
    """ARM pretraining (or the MAE / contrastive baseline); the defaults are the reference recipe (ARM_SPEC.md)."""

    MODELS: ClassVar[dict[str, type]] = {"arm": PretrainerConfig, "mae": MAEConfig, "contrastive": ContrastiveConfig}

    model: Union[PretrainerConfig, MAEConfig, ContrastiveConfig] = field(
        default_factory=lambda: _default_model(PretrainConfig, "arm"))
    method: str = knob("arm", "pretraining method: ARM, or the MAE or contrastive (SimCLR) baseline (decides the "
                              "model config; contrastive also trains on two augmented views per image)",
                       tuple(MODELS))
    epochs: int = knob(1600, "training epochs", check=POS)
    warmup_epochs: float = knob(40.0, "linear warmup epochs", check=NONNEG_F)
    blr: float = knob(1.5e-4, "base learning rate: lr = blr * effective batch / 256", check=POS_F)
    betas: list[float] = knob([0.9, 0.95], "AdamW betas, 2 values in [0, 1)", check=BETAS)
    clip_grad: Optional[float] = knob(3.0, "clip the gradient norm to this value", check=POS_F)
    output: str = knob("runs/pretrain", "output folder")
    min_scale: float = knob(0.2, "RandomResizedCrop minimum scale, in (0, 1]", check=number(0, 1, lo_open=True))
    data: Optional[str] = knob(None, "training images: DIR with train/ (and val/), a folder of images (no class "
                                     "folders needed), a text file listing images, webdataset shards (DIR/train/*.tar "
                                     "or a pattern such as 'shards/train-{000..099}.tar') or a Hugging Face dataset "
                                     "saved on disk (default: the embedded digits)")
    val_data: Optional[str] = knob(None, "validation images, for a validation loss every --eval-every epochs (any "
                                         "form --data takes; default: the val split of --data when it has one)")


@_nested_init
@dataclass
class FinetuneConfig(TrainConfig):
    """Classification finetuning; the defaults are the reference recipe for the base model."""

    MODELS: ClassVar[dict[str, type]] = {"": ClassifierConfig}
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {"size": "base", "num_classes": None, "drop_path_rate": 0.1}

    model: ClassifierConfig = field(default_factory=lambda: _default_model(FinetuneConfig))
    init: Optional[str] = knob(None, "pretraining checkpoint to start from (ours or the reference's); the classifier "
                                     "is the architecture it describes, model flags given override it")
    strict: bool = knob(True, "--init must fit the classifier exactly (--no-strict loads the tensors that fit and "
                              "lists the others)")
    label_fraction: float = knob(1.0, "train on this fraction of the labelled images (stratified, fixed subset)",
                                 check=number(0, 1, lo_open=True))
    min_lr: float = knob(1e-6, "lr at the end of the cosine", check=NONNEG_F)
    layer_decay: float = knob(0.65, "layer-wise lr decay (1: none)", check=number(0, 1, lo_open=True))
    ema: bool = knob(True, "keep an exponential moving average of the weights")
    ema_decay: float = knob(0.99992, "EMA decay per step", check=PROB)
    mixup: float = knob(0.8, "mixup alpha (0: off)", check=NONNEG_F)
    cutmix: float = knob(1.0, "cutmix alpha (0: off)", check=NONNEG_F)
    smoothing: float = knob(0.1, "label smoothing", check=number(0, 1, hi_open=True))
    auto_augment: Optional[str] = knob("rand-m9-mstd0.5-inc1", "timm RandAugment policy ('' or none: off)")
    reprob: float = knob(0.25, "random erasing probability", check=PROB)
    min_scale: float = knob(0.08, "RandomResizedCrop minimum scale, in (0, 1]", check=number(0, 1, lo_open=True))
    hflip: float = knob(0.5, "horizontal flip probability", check=PROB)
    crop_pct: float = knob(DEFAULT_CROP_PCT, "eval: resize to img_size / crop_pct then center-crop",
                           check=number(0, 1, lo_open=True))
    output: str = knob("runs/finetune", "output folder")


# ---- from dicts (YAML, flags, old checkpoints) to configs ------------------------------------------------------------
def model_knobs(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """name -> (field, type) of every model knob `cls` can nest."""
    out: dict[str, tuple[dataclasses.Field, Any]] = {}
    for mcls in cls.MODELS.values():
        hints = type_hints(mcls)
        for f in dataclasses.fields(mcls):
            out.setdefault(f.name, (f, hints[f.name]))
    return out


def split_layer(cls: type, values: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """One layer of values (nested, or the flat form of earlier versions; '-' or '_' in keys) as
    {training key: value, ..., "model": {model key: value}}. Unknown keys raise ConfigError ("did you mean")."""
    train = {f.name for f in cls.training_fields()}
    models = model_knobs(cls)
    out: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name == "model":
            if dataclasses.is_dataclass(value):
                model.update(dataclasses.asdict(value))
            elif isinstance(value, dict):
                for k, v in value.items():
                    k = str(k).replace("-", "_")
                    if k not in models:
                        raise unknown_key(source, f"model.{k}", [f"model.{m}" for m in models])
                    model[k] = v
            else:
                model["size"] = value  # `model: base` of the flat form
        elif name in train:
            out[name] = value
        else:
            name = LEGACY_KEYS.get(name, name)
            if name not in models:
                raise unknown_key(source, str(key), [*train, *models, *LEGACY_KEYS])
            if value is not None or alternatives(models[name][1])[1]:  # flat form: null = the size's value
                model[name] = value
    model.pop("kind", None)  # the family follows from the config class (and `method`)
    if model:
        out["model"] = model
    return out


def _checked(f: dataclasses.Field, tp: Any, value: Any, where: str) -> Any:
    value = coerce(value, tp, where)
    why = why_invalid(f, value)
    if why:
        raise ConfigError(f"{where}: {why}")
    return value


def coerce_layer(cls: type, layer: dict[str, Any], where: Where) -> dict[str, Any]:
    """A split layer with each value converted to its field's type and checked (choices, range); errors name the
    value as `where(dotted key, value)` does (a flag, or `file: key=value`)."""
    hints = type_hints(cls)
    fields = {f.name: f for f in cls.training_fields()}
    out = {k: _checked(fields[k], hints[k], v, where(k, v)) for k, v in layer.items() if k != "model"}
    if "model" in layer:
        models = model_knobs(cls)
        out["model"] = {k: _checked(*models[k], v, where(f"model.{k}", v)) for k, v in layer["model"].items()}
    return out


def build_config_kwargs(cls: type, layers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Split layers merged in order (later wins) over the defaults, as keyword arguments of `cls`'s dataclass
    __init__: the training values and `model`, one model config. A layer that names a size resets width and depth
    to that size's unless the same layer gives them."""
    layers = list(layers)
    train: dict[str, Any] = {}
    for layer in layers:
        train.update({k: v for k, v in layer.items() if k != "model"})
    key = train.get("method", next(iter(cls.MODELS)))  # the first model class is the default
    if key not in cls.MODELS:
        raise ConfigError(f"method={key!r}: choose one of {', '.join(cls.MODELS)}")
    mcls = cls.MODELS[key]
    names = {f.name for f in dataclasses.fields(mcls)} - {"kind"}
    model: dict[str, Any] = {}
    for values in (dataclasses.asdict(mcls()), cls.MODEL_DEFAULTS, *(layer.get("model", {}) for layer in layers)):
        values = {k: v for k, v in values.items() if k in names}  # the other method's knobs do not apply
        model.update(size_values(values["size"]) if values.get("size") else {})
        model.update(values)
    return {**train, "model": mcls(**model)}


def yaml_where(source: str) -> Where:
    return lambda key, value: f"{source}: {key}={value!r}"


def config_from_layers(cls: type, layers: Iterable[tuple[dict[str, Any], str, Where]]) -> Any:
    """`cls` from (values, source, where) layers over the defaults, e.g. [(preset, ...), (flags given, ...)]."""
    parsed = [coerce_layer(cls, split_layer(cls, values, source), where) for values, source, where in layers]
    return cls(**build_config_kwargs(cls, parsed))


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build `cls` from defaults updated by `values` (nested, or flat as older runs wrote them); unknown keys and bad
    values raise ConfigError naming `source: key=value`."""
    return config_from_layers(cls, [(values, source, yaml_where(source))])


# ---- presets and files -----------------------------------------------------------------------------------------
PRESETS = Path(__file__).resolve().parents[1] / "configs"  # the repo's configs/, shipped in the package


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def preset_path(name: str | Path) -> Path:
    """`name` as a file if it looks like a path or exists, else the shipped preset `configs/<name>.yaml`."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists() or len(path.parts) > 1:
        return path
    if (PRESETS / f"{name}.yaml").is_file():
        return PRESETS / f"{name}.yaml"
    raise ConfigError(f"--config {name}: no such file, and no preset of that name (presets: "
                      f"{', '.join(preset_names())})")


def load_config_file(name: str | Path) -> tuple[dict[str, Any], str]:
    """(values, source) of a YAML file or preset name, for `config_from_layers`."""
    path = preset_path(name)
    return load_yaml(path), f"--config {path}"


def save_config(cfg: Any, path: str | Path) -> None:
    atomic_write(path, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
