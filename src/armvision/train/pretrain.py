"""ARM (or MAE / contrastive baseline) pretraining with the reference recipe as defaults; the command is
`armvision pretrain`."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..data.loading import resolve_num_workers
from ..errors import ConfigError
from ..models import build_model
from .config import PretrainConfig
from .distributed import DistInfo, ShardSampler, all_reduce, init_distributed
from .engine import Trainer, run_folder
from .optim import param_groups


def build_from_config(model_config) -> nn.Module:
    """The model of a nested model config; a geometry that cannot work is one ConfigError naming the config."""
    try:
        return build_model(model_config)
    except (ValueError, AssertionError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"cannot build the {model_config.size or 'custom'} {model_config.kind} with "
                          f"{dataclasses.asdict(model_config)}: {e}") from None


def build_pretrainer(cfg: PretrainConfig) -> nn.Module:
    """The ARM pretrainer (or the MAE / contrastive baseline, by `cfg.method`) that `cfg.model` describes."""
    return build_from_config(cfg.model)


def pretrain_data_transform(cfg: PretrainConfig) -> Callable:
    """The reference's crop + flip; for the contrastive method, two SimCLR views per image ((2, C, H, W))."""
    from ..data import TwoViews, contrastive_transform, pretrain_transform

    if cfg.method == "contrastive":
        return TwoViews(contrastive_transform(cfg.model.img_size, cfg.min_scale, cfg.mean, cfg.std))
    return pretrain_transform(cfg.model.img_size, cfg.min_scale, cfg.mean, cfg.std)


def model_config_dict(model: nn.Module) -> dict | None:
    cfg = getattr(model, "config", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None


def pretrain_loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The pretrainer computes its own loss; class labels are ignored."""
    out = model(images)
    return out["loss"] if isinstance(out, dict) else out.loss


def pretrain_sets(cfg: PretrainConfig) -> tuple[Dataset, Optional[Dataset]]:
    """(training images, validation images or None): --data (labels not needed: also a folder of images or a file
    list), and --val-data or the val split of --data when it has one. Augmentations are seeded per sample."""
    from ..data import AugmentSeeded, build_dataset, eval_transform, split_exists

    def build(data: Optional[str], split: str, transform: Callable, train: bool) -> Dataset:
        ds = build_dataset(data, split, transform, cfg.model.img_size, cfg.strict_data,
                           max_pixels=cfg.max_image_pixels, labelled=False, train=train, seed=cfg.seed)
        return ds if isinstance(ds, IterableDataset) else AugmentSeeded(ds, cfg.seed)  # streams seed themselves

    train_set = build(cfg.data, "train", pretrain_data_transform(cfg), True)
    if cfg.val_data is None and (cfg.data is None or not split_exists(cfg.data, "val")):
        return train_set, None
    val_tf = (pretrain_data_transform(cfg) if cfg.method == "contrastive"  # two views, drawn the same every time
              else eval_transform(cfg.model.img_size, mean=cfg.mean, std=cfg.std))
    if cfg.val_data is not None:
        return train_set, build(cfg.val_data, "train" if not split_exists(cfg.val_data, "val") else "val", val_tf,
                                False)
    return train_set, build(cfg.data, "val", val_tf, False)


def make_val_loss(cfg: PretrainConfig, val_set: Dataset, info: DistInfo) -> Callable:
    """evaluate(model, ema) -> {"val_loss"}: the mean pretraining loss over the validation images (every process
    the same number of them; random masks and views drawn from the seed, so every evaluation sees the same)."""
    if isinstance(val_set, IterableDataset):
        if cfg.fsdp:
            raise ConfigError("a streamed validation set gives the processes different numbers of batches, which "
                              "--fsdp cannot run; use a folder or a saved dataset for validation, or drop --fsdp")
        loader = DataLoader(val_set, batch_size=cfg.batch_size, num_workers=resolve_num_workers(cfg.num_workers))
    else:
        usable = len(val_set) - len(val_set) % info.world_size  # the same count on every process
        loader = DataLoader(val_set, batch_size=cfg.batch_size, sampler=ShardSampler(usable, info.world_size,
                            info.rank), num_workers=resolve_num_workers(cfg.num_workers))

    def evaluate(model: nn.Module, ema: Optional[nn.Module]) -> dict:
        total = torch.zeros(2, dtype=torch.float64, device=info.device)  # loss x images, images
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            for images, _ in loader:
                images = images.to(info.device, non_blocking=True)
                total += torch.stack([pretrain_loss(model, images, None).double() * len(images),
                                      torch.tensor(float(len(images)), dtype=torch.float64, device=info.device)])
        total = all_reduce(total, op="sum")
        return {"val_loss": (total[0] / total[1].clamp_min(1)).item()}

    return evaluate


def train_pretrain(cfg: PretrainConfig, info: DistInfo | None = None) -> dict:
    """Pretrain according to `cfg`; returns the Trainer summary (step, loss, checkpoint path).

    Order: build the model (a geometry that cannot work fails first), claim the output folder (lock, no silent
    overwrite, writable), then scan the data and train; with validation images, a validation loss every
    --eval-every epochs (a "val" line of log.jsonl)."""
    info = info or init_distributed(cfg.device, cfg.dist_timeout)
    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    model = build_pretrainer(cfg)
    with run_folder(cfg, info):
        train_set, val_set = pretrain_sets(cfg)
        model = model.to(info.device)
        trainer = Trainer(cfg, info, model, train_set, pretrain_loss,
                          make_groups=lambda m: param_groups(m, cfg.weight_decay),
                          evaluate=make_val_loss(cfg, val_set, info) if val_set is not None else None,
                          model_config=model_config_dict(model), kind="pretrain")
        return trainer.fit()
