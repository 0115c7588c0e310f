"""Run configuration: dataclasses that nest the model's config, filled from defaults <- preset / YAML <- flags.

`PretrainConfig` and `FinetuneConfig` hold the training knobs and, under `model`, the model's own dataclass
(`PretrainerConfig`, `MAEConfig` or `ContrastiveConfig` by `method`; `ClassifierConfig`), so a model knob has one
name, one default and one check. In Python a config is built nested: `PretrainConfig(epochs=1, model=...)` (no
`model`: the recipe's default model for `method`). From mappings (YAML files, checkpoints, the flags given) it is built
by `config_from_dict` / `TrainConfig.from_layers`, which also read the flat form that earlier versions wrote in their
files and checkpoints (`model: base`, `embed_dim: null`, `drop_path: 0.1`, `cluster_size: 4` at the top level): that
translation (`split_layer`) is the only place that form is known. The resolved config is written as nested
`config.yaml` next to the checkpoints and stored (as a dict) in them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Optional, Union

import yaml

from ..argcheck import device, items, number, text
from ..constants import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError
from ..fields import (FieldError, Given, Knobs, Layer, alternatives, build, config_from_dict, knob, knobs_of,
                      load_mapping, mapping, read_layer, type_hints, unknown_key)
from ..fileio import atomic_write
from ..models.config import ClassifierConfig, ContrastiveConfig, MAEConfig, PretrainerConfig

__all__ = ["TrainConfig", "PretrainConfig", "FinetuneConfig", "config_from_dict", "split_layer", "model_knobs",
           "preset_names", "preset_path", "load_config_file", "save_config", "PRESETS"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb threshold
LEGACY_KEYS = {"drop_path": "drop_path_rate"}  # flat key of earlier versions -> model field
POS, NONNEG = number(1), number(0)  # integers >= 1, >= 0
POS_F, NONNEG_F, PROB = number(0, lo_open=True), number(0), number(0, 1)
BETAS = items(2, number(0, 1, hi_open=True))


@dataclass
class TrainConfig(Knobs):
    """Knobs shared by pretraining and finetuning; `model` is the nested model config (see the subclasses)."""

    MODELS: ClassVar[dict[str, type]] = {}  # `method` ("" when there is one kind) -> model config; first: default
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {"size": "base"}  # this recipe's model values over the class defaults

    # data
    data: Optional[str] = knob(None, "DIR with train/ and val/ ImageFolders, webdataset shards (DIR/train/*.tar or "
                               "DIR/train-*.tar), a Hugging Face dataset saved on disk, or embedded:mnist5k (5,000 "
                               "shipped MNIST digits) (default: the embedded 8x8 digits)",
                      check=text("for the embedded digits"))
    strict_data: bool = knob(False, "fail before training if any image in --data cannot be decoded")
    max_image_pixels: int = knob(DEFAULT_MAX_PIXELS, "skip (and name) images with more pixels than this", check=POS)
    num_workers: Optional[int] = knob(None, "data-loading worker processes per training process (default: the CPUs "
                                            "this process may use, minus one, at most 8)", check=NONNEG)
    mean: list[float] = knob(list(IMAGENET_MEAN), "normalisation mean, 3 values (ImageNet)", check=items(3, number()))
    std: list[float] = knob(list(IMAGENET_STD), "normalisation std, 3 values > 0 (ImageNet)", check=items(3, POS_F))
    model: Any = None  # the model config (a dataclass of models.config); None: the recipe's, for `method`
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
    output: str = knob("runs/train", "output folder: config, log.jsonl, TensorBoard events, checkpoints",
                       check=text())
    resume: Optional[str] = knob(None, "checkpoint to continue from, or 'auto' for OUTPUT/checkpoint-last.pth if any",
                                 check=text("to start afresh"))
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
        """The recipe's model for `method` when none is given; then every knob converted and checked (fields.Knobs),
        however the config was made (the model config checked itself when it was built)."""
        super().__post_init__()  # the knobs, `method` among them
        method = getattr(self, "method", next(iter(self.MODELS)))
        mcls = self.MODELS[method]
        if self.model is None:
            self.model = mcls.from_layers([Layer(self.MODEL_DEFAULTS, f"{type(self).__name__} defaults")], "model.")
        elif type(self.model) is not mcls:
            raise ConfigError(f"model: a {type(self.model).__name__} does not go with {type(self).__name__}"
                              f"{f' method={method!r}' if method else ''}; it takes a {mcls.__name__}")

    @classmethod
    def training_fields(cls) -> list[dataclasses.Field]:
        return list(knobs_of(cls).values())

    @classmethod
    def from_layers(cls, layers: Iterable[Layer], prefix: str = "") -> Any:
        """The config of layers over the defaults, later layers winning (a layer naming a model size resets width
        and depth to that size's unless it gives them); each value converted and checked once, by its field, and
        named as its layer names it. Model knobs of another `method` than the chosen one are left out."""
        train: dict[str, Any] = {}
        given: Given = {}
        model_layers = [Layer(cls.MODEL_DEFAULTS, f"{cls.__name__} defaults")]
        for layer in layers:
            split = split_layer(cls, mapping(layer.values, layer.source), layer.source)
            model = split.pop("model", None)
            for k, v in read_layer(cls, layer._replace(values=split)).items():
                train[k], given[k] = v, (layer, split[k])
            if model:
                model_layers.append(layer._replace(values=model))
                given.update({f"model.{k}": (layer, v) for k, v in model.items()})
        method = train.get("method", next(iter(cls.MODELS)))
        if method not in cls.MODELS:  # refused by its field, named as its layer names it
            return build(cls, train, given)
        own = knobs_of(cls.MODELS[method])
        model = cls.MODELS[method].from_layers([m._replace(values={k: v for k, v in m.values.items() if k in own})
                                                for m in model_layers], "model.")
        return build(cls, {**train, "model": model}, given)


@dataclass
class PretrainConfig(TrainConfig):
    """ARM pretraining (or the MAE / contrastive baseline); the defaults are the reference recipe (ARM_SPEC.md)."""

    MODELS: ClassVar[dict[str, type]] = {"arm": PretrainerConfig, "mae": MAEConfig, "contrastive": ContrastiveConfig}

    model: Optional[Union[PretrainerConfig, MAEConfig, ContrastiveConfig]] = None
    method: str = knob("arm", "pretraining method: ARM, or the MAE or contrastive (SimCLR) baseline (decides the "
                              "model config; contrastive also trains on two augmented views per image)",
                       tuple(MODELS))
    epochs: int = knob(1600, "training epochs", check=POS)
    warmup_epochs: float = knob(40.0, "linear warmup epochs", check=NONNEG_F)
    blr: float = knob(1.5e-4, "base learning rate: lr = blr * effective batch / 256", check=POS_F)
    betas: list[float] = knob([0.9, 0.95], "AdamW betas, 2 values in [0, 1)", check=BETAS)
    clip_grad: Optional[float] = knob(3.0, "clip the gradient norm to this value", check=POS_F)
    output: str = knob("runs/pretrain", "output folder", check=text())
    min_scale: float = knob(0.2, "RandomResizedCrop minimum scale, in (0, 1]", check=number(0, 1, lo_open=True))
    data: Optional[str] = knob(None, "training images: DIR with train/ (and val/), a folder of images (no class "
                                     "folders needed), a text file listing images, webdataset shards (DIR/train/*.tar "
                                     "or a pattern such as 'shards/train-{000..099}.tar') or a Hugging Face dataset "
                                     "saved on disk (default: the embedded digits)", check=text("for the embedded digits"))
    val_data: Optional[str] = knob(None, "validation images, for a validation loss every --eval-every epochs (any "
                                         "form --data takes; default: the val split of --data when it has one)",
                                   check=text("for the val split of --data"))


@dataclass
class FinetuneConfig(TrainConfig):
    """Classification finetuning; the defaults are the reference recipe for the base model."""

    MODELS: ClassVar[dict[str, type]] = {"": ClassifierConfig}
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {"size": "base", "num_classes": None, "drop_path_rate": 0.1}

    model: Optional[ClassifierConfig] = None
    init: Optional[str] = knob(None, "pretraining checkpoint to start from (ours or the reference's); the classifier "
                                     "is the architecture it describes, model flags given override it",
                               check=text("to train from scratch"))
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
    output: str = knob("runs/finetune", "output folder", check=text())

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.num_classes == 0:
            raise FieldError("model.num_classes", 0, "a finetuned classifier needs at least one class (leave it out: "
                             "as many as the class folders)")


# ---- the flat form of earlier versions, and model knobs by name ------------------------------------------------
def model_knobs(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """name -> (field, type) of every model knob `cls` can nest (the family's `kind` excluded)."""
    out: dict[str, tuple[dataclasses.Field, Any]] = {}
    for mcls in cls.MODELS.values():
        hints = type_hints(mcls)
        for name, f in knobs_of(mcls).items():
            if name != "kind":
                out.setdefault(name, (f, hints[name]))
    return out


def split_layer(cls: type, values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """One layer of values, nested or in the flat form of earlier versions' files ('-' or '_' in keys), as
    {training key: value, ..., "model": {model key: value}}. Unknown keys raise ConfigError ("did you mean"); the
    model's `kind` is dropped (the family follows from the config class and `method`)."""
    train = set(knobs_of(cls))
    models = model_knobs(cls)
    out: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name == "model" and isinstance(value, Mapping):
            for k, v in value.items():
                k = str(k).replace("-", "_")
                if k != "kind" and k not in models:
                    raise unknown_key(source, f"model.{k}", [f"model.{m}" for m in models])
                model[k] = v
        elif name == "model":
            model["size"] = value  # `model: base` of the flat form
        elif name in train:
            out[name] = value
        else:
            name = LEGACY_KEYS.get(name, name)
            if name not in models:
                raise unknown_key(source, str(key), [*train, *models, *LEGACY_KEYS])
            if value is not None or alternatives(models[name][1])[1]:  # flat form: null = the size's value
                model[name] = value
    model.pop("kind", None)
    if model:
        out["model"] = model
    return out


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


def load_config_file(name: str | Path) -> Layer:
    """The layer of values of a YAML file or preset name (one line, exit 2, when it is not text, not YAML or not a
    mapping)."""
    path = preset_path(name)
    source = f"--config {path}"
    return Layer(load_mapping(path, source), source)


class _Dumper(yaml.SafeDumper):
    """YAML of plain values, tuples (an image size) written as lists."""


_Dumper.add_representer(tuple, yaml.SafeDumper.represent_list)


def save_config(cfg: Any, path: str | Path) -> None:
    atomic_write(path, yaml.dump(dataclasses.asdict(cfg), Dumper=_Dumper, sort_keys=False))
