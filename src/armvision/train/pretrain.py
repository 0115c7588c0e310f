"""ARM (or MAE / contrastive baseline) pretraining with the reference recipe as defaults; the command is
`armvision pretrain`."""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..models import build_model
from .config import PretrainConfig
from .distributed import DistInfo, init_distributed
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


def train_pretrain(cfg: PretrainConfig, info: DistInfo | None = None) -> dict:
    """Pretrain according to `cfg`; returns the Trainer summary (step, loss, checkpoint path).

    Order: build the model (a geometry that cannot work fails first), claim the output folder (lock, no silent
    overwrite, writable), then scan the data and train."""
    from ..data import AugmentSeeded, build_dataset

    info = info or init_distributed(cfg.device, cfg.dist_timeout)
    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    model = build_pretrainer(cfg)
    img_size = cfg.model.img_size
    with run_folder(cfg, info):
        transform = pretrain_data_transform(cfg)
        train_set = AugmentSeeded(build_dataset(cfg.data, "train", transform, img_size, cfg.strict_data,
                                                max_pixels=cfg.max_image_pixels), cfg.seed)
        model = model.to(info.device)
        trainer = Trainer(cfg, info, model, train_set, pretrain_loss,
                          make_groups=lambda m: param_groups(m, cfg.weight_decay),
                          model_config=model_config_dict(model), kind="pretrain")
        return trainer.fit(claim=False)
