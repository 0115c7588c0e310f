"""Classification finetuning from a pretraining checkpoint (ours or the reference's); the command is
`armvision finetune`.

Layer-wise lr decay, drop path, EMA, mixup / cutmix with label smoothing, top-1 / top-5 of the model and of its
EMA on val after each epoch, checkpoint-best.pth (best model top-1) and checkpoint-last.pth.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from ..data.loading import resolve_num_workers
from ..errors import CheckpointError, ConfigError
from ..eval.metrics import PAD, ClassificationMeter
from ..fields import Layer, mapping
from .config import FinetuneConfig
from .distributed import DistInfo, ShardSampler, init_distributed
from .engine import Trainer, resolve_precision, run_folder
from .optim import param_groups
from .pretrain import build_from_config, model_config_dict

log = logging.getLogger("armvision.train")


def build_classifier(cfg: FinetuneConfig, num_classes: int) -> nn.Module:
    """The classifier `cfg.model` describes, with `num_classes` outputs when the config leaves them open."""
    model_config = cfg.model
    if not model_config.num_classes:  # none (or 0): the number of class folders
        model_config = dataclasses.replace(model_config, num_classes=num_classes)
    return build_from_config(model_config)


def init_from(model: nn.Module, path: str, verbose: bool = True, strict: bool = True) -> None:
    """Load a pretraining (or finetuning) checkpoint into the classifier and print what was adapted; `strict`
    (--strict, the default): a tensor that does not fit is an error, else it is skipped and listed."""
    from ..models import load_checkpoint

    try:
        report = load_checkpoint(model, path, strict=strict)
    except CheckpointError as e:  # the command line's word for the library's strict=False
        raise CheckpointError(str(e).replace("pass strict=False", "pass --no-strict")) from None
    if verbose:
        log.info("initialised from %s (%s weights): new %s, resized %s%s", path, report.source, report.missing,
                 report.resized, f"; not loaded (--no-strict): {report.skipped}" if report.skipped else "")


# the model fields a checkpoint's architecture decides (the classifier's head and drop path are finetuning's own)
ARCH_KEYS = ("size", "embed_dim", "depth", "img_size", "patch_size", "in_chans", "d_state", "d_conv", "expand",
             "norm_eps", "block")


def init_architecture(path: str) -> dict[str, Any]:
    """The architecture the checkpoint at `path` describes (our model_config, or read off a reference state dict's
    shapes), as model keys of a FinetuneConfig layer; {} when there is no such file."""
    from ..models import infer_config, read_checkpoint, select_state_dict

    if not Path(path).exists():
        return {}  # train_finetune says so (or resumes without it)
    ckpt = read_checkpoint(path)
    cfg = ckpt.get("model_config")
    if not isinstance(cfg, dict):
        cfg = infer_config(select_state_dict(ckpt, "model", path), ckpt.get("args"))
    return {k: cfg[k] for k in ARCH_KEYS if cfg.get(k) is not None}


def finetune_config(layers: list[Layer]) -> FinetuneConfig:
    """FinetuneConfig from layers (preset / YAML, flags) over the defaults, with the architecture of the --init
    checkpoint (if any) beneath them as a layer of its own, checked by the same fields as the others: the classifier
    is the model the checkpoint describes, and values given for its fields override it (one line says which)."""
    from .config import split_layer

    init = None
    for layer in layers:
        init = split_layer(FinetuneConfig, mapping(layer.values, layer.source), layer.source).get("init", init)
    arch = init_architecture(init) if isinstance(init, str) and init.strip() else {}
    if not arch:
        return FinetuneConfig.from_layers(layers)
    described = Layer({"model": arch}, f"--init {init}")
    ckpt = FinetuneConfig.from_layers([described]).model  # the checkpoint's values, settled as the config holds them
    cfg = FinetuneConfig.from_layers([described, *layers])
    usual = FinetuneConfig().model  # fields at their usual value are not worth a word
    shown = ", ".join(f"{k} {_shown(getattr(ckpt, k))}" for k in arch
                      if k in ARCH_KEYS[1:5] or (k != "size" and getattr(ckpt, k) != getattr(usual, k)))
    changed = [f"{k} {_shown(getattr(cfg.model, k))} (checkpoint: {_shown(getattr(ckpt, k))})" for k in arch
               if k != "size" and getattr(cfg.model, k) != getattr(ckpt, k)]
    if int(os.environ.get("RANK", "0")) == 0:
        log.info("finetune: the classifier --init %s describes (%s)%s", init, shown,
                 f"; given values override it: {', '.join(changed)}" if changed else "")
    return cfg


def _shown(value: Any) -> str:
    """A config value as the log line says it: an image size (h, w) as one number when square, else HxW."""
    if isinstance(value, tuple) and len(value) == 2:
        return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"
    return str(value)


def make_loss(cfg: FinetuneConfig, num_classes: int):
    """loss_fn(model, images, labels) with mixup / cutmix and label smoothing (timm)."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    mixup = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        if cfg.batch_size % 2:
            raise ConfigError(f"--batch-size {cfg.batch_size}: mixup / cutmix need an even batch size")
        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing,
                      num_classes=num_classes)
        criterion: nn.Module = SoftTargetCrossEntropy()
    elif cfg.smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(cfg.smoothing)
    else:
        criterion = nn.CrossEntropyLoss()

    def loss_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if mixup is not None:
            images, labels = mixup(images, labels)  # labels become soft (B, C)
        return criterion(model(images).float(), labels)

    return loss_fn


class _PaddedEval(Dataset):
    """Index i >= len(dataset) -> (image of i % len, label PAD = -1): padding that evaluation ignores."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        img, label = self.dataset[i % len(self.dataset)]
        return img, (label if i < len(self.dataset) else PAD)


def make_evaluate(cfg: FinetuneConfig, val_set: Dataset, info: DistInfo):
    """evaluate(model, ema) -> {val_loss, acc1, acc5, ema_acc1, ema_acc5}: top-1 / top-5 in percent, over all
    processes."""
    workers = resolve_num_workers(cfg.num_workers)
    if isinstance(val_set, IterableDataset):  # a stream splits itself over processes, once through
        if cfg.fsdp:
            raise ConfigError("a streamed validation set gives the processes different numbers of batches, which "
                              "--fsdp cannot run; use a folder or a saved dataset for val/, or drop --fsdp")
        loader = DataLoader(val_set, batch_size=cfg.batch_size, num_workers=workers,
                            pin_memory=info.device.type == "cuda")
    else:
        sampler = ShardSampler(len(val_set), info.world_size, info.rank, pad=True)  # same batch count on every rank
        loader = DataLoader(_PaddedEval(val_set), batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                            pin_memory=info.device.type == "cuda")
    dtype, _ = resolve_precision(cfg.precision, info.device)

    def measure(model: nn.Module) -> dict:
        meter = ClassificationMeter((1, 5), device=info.device)
        for images, labels in loader:
            images, labels = images.to(info.device), labels.to(info.device)
            with torch.autocast(info.device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(images)  # (B, C)
            meter.update(logits, labels)  # label -1 (the padding) is not counted
        meter.all_reduce()
        return meter.compute()

    def evaluate(model: nn.Module, ema: Optional[nn.Module]) -> dict:
        m = measure(model)
        out = {"val_loss": m["loss"], "acc1": m["top1"], "acc5": m["top5"]}
        if ema is not None:
            e = measure(ema)
            out.update(ema_acc1=e["top1"], ema_acc5=e["top5"])
        return out

    return evaluate


def class_names(dataset: Dataset, num_classes: int) -> list[str]:
    """The class names the checkpoint stores: the dataset's classes (folder names), or the class ids when the
    dataset has none or the head has another number of classes."""
    classes = [str(c) for c in getattr(dataset, "classes", None) or []]
    return classes if len(classes) == num_classes else [str(i) for i in range(num_classes)]


def label_subset(dataset: Dataset, fraction: float, seed: int = 0) -> Subset:
    """A fixed, class-stratified subset holding `fraction` of each class (at least one image per class)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"label_fraction must be in (0, 1], got {fraction}")
    targets = torch.as_tensor(dataset.targets)
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in targets.unique().tolist():
        idx = (targets == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        keep += idx[: max(1, math.ceil(fraction * len(idx)))].tolist()
    subset = Subset(dataset, sorted(keep))
    subset.classes, subset.targets = dataset.classes, [int(targets[i]) for i in sorted(keep)]
    return subset


def train_finetune(cfg: FinetuneConfig, info: DistInfo | None = None) -> dict:
    """Finetune according to `cfg`; returns the Trainer summary (best top-1, last metrics, checkpoint).

    The output folder is claimed (lock, no silent overwrite, writable) before the data is scanned."""
    from ..data import AugmentSeeded, build_dataset, eval_transform, finetune_transform
    from .checkpoint import resume_path

    info = info or init_distributed(cfg.device, cfg.dist_timeout)
    if cfg.init and not Path(cfg.init).exists() and resume_path(cfg.resume, cfg.output) is None:
        raise CheckpointError(f"--init {cfg.init}: file not found")  # before the output folder is claimed
    with run_folder(cfg, info):
        img_size = cfg.model.img_size
        train_tf = finetune_transform(img_size, cfg.auto_augment, cfg.reprob, min_scale=cfg.min_scale,
                                      hflip=cfg.hflip, mean=cfg.mean, std=cfg.std)
        val_tf = eval_transform(img_size, cfg.crop_pct, cfg.mean, cfg.std)
        train_raw = build_dataset(cfg.data, "train", train_tf, img_size, cfg.strict_data,
                                  max_pixels=cfg.max_image_pixels, seed=cfg.seed)
        val_set = build_dataset(cfg.data, "val", val_tf, img_size, cfg.strict_data, max_pixels=cfg.max_image_pixels)
        num_classes = cfg.model.num_classes or len(train_raw.classes)
        stream = isinstance(train_raw, IterableDataset)
        if cfg.label_fraction < 1.0:
            if stream:
                raise ConfigError("--label-fraction needs an indexed dataset (folders or a saved Hugging Face "
                                  "dataset), not a stream of shards")
            train_raw = label_subset(train_raw, cfg.label_fraction)
        if getattr(val_set, "classes", None) not in (None, train_raw.classes):
            raise ConfigError(f"--data {cfg.data}: train/ and val/ have different class folders")
        torch.manual_seed(cfg.seed)
        model = build_classifier(cfg, num_classes)
        resuming = resume_path(cfg.resume, cfg.output) is not None
        if cfg.init and not resuming:
            init_from(model, cfg.init, verbose=info.is_main, strict=cfg.strict)
        model = model.to(info.device)
        train_set = train_raw if stream else AugmentSeeded(train_raw, cfg.seed)  # streams seed themselves
        trainer = Trainer(cfg, info, model, train_set, make_loss(cfg, num_classes),
                          make_groups=lambda m: param_groups(m, cfg.weight_decay, layer_decay=cfg.layer_decay,
                                                             depth=getattr(m, "depth", None)),
                          evaluate=make_evaluate(cfg, val_set, info), ema_decay=cfg.ema_decay if cfg.ema else None,
                          model_config=model_config_dict(model), kind="finetune", best_key="acc1",
                          label_names=class_names(train_raw, num_classes))
        return trainer.fit()
