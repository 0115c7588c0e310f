"""`armvision pretrain`: ARM (or MAE baseline) pretraining with the reference recipe as defaults.

    armvision pretrain --model base --data /imagenet --output runs/arm-b      # reference recipe (ARM_SPEC.md)
    armvision pretrain --model tiny --img-size 32 --patch-size 8 --cluster-size 2 --max-steps 200   # embedded digits
    torchrun --nproc_per_node=8 -m armvision.cli pretrain --data /imagenet ...                      # DDP
"""
from __future__ import annotations

import argparse
import dataclasses

import torch
from torch import nn

from ..errors import ConfigError
from .config import PretrainConfig, add_config_arguments, resolve_config
from .distributed import DistInfo, init_distributed, run_distributed
from .engine import Trainer, run_folder
from .optim import param_groups


def build_pretrainer(cfg: PretrainConfig) -> nn.Module:
    """The ARM pretrainer (or the MAE baseline) of `cfg` through the public factories."""
    import armvision

    common = {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "img_size": cfg.img_size,
              "patch_size": cfg.patch_size, "decoder_embed_dim": cfg.decoder_embed_dim,
              "decoder_depth": cfg.decoder_depth, "decoder_num_heads": cfg.decoder_num_heads,
              "drop_path_rate": cfg.drop_path}
    if cfg.method == "mae":
        kwargs = {k: v for k, v in common.items() if v is not None}
        return armvision.create_mae(cfg.model, mask_ratio=cfg.mask_ratio, **kwargs)
    arm = {"cluster_size": cfg.cluster_size, "ordering": cfg.ordering, "order_seed": cfg.order_seed,
           "feature_layers": cfg.feature_layers, "target": cfg.target}
    kwargs = {k: v for k, v in {**common, **arm}.items() if v is not None}
    try:
        return armvision.create_pretrainer(cfg.model, **kwargs)
    except (ValueError, AssertionError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"cannot build the {cfg.model} pretrainer with {kwargs}: {e}") from None


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
    from ..data import AugmentSeeded, build_dataset, pretrain_transform

    info = info or init_distributed(cfg.device, cfg.dist_timeout)
    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    model = build_pretrainer(cfg)
    with run_folder(cfg, info):
        transform = pretrain_transform(cfg.img_size, cfg.min_scale, cfg.mean, cfg.std)
        train_set = AugmentSeeded(build_dataset(cfg.data, "train", transform, cfg.img_size, cfg.strict_data,
                                                max_pixels=cfg.max_image_pixels), cfg.seed)
        model = model.to(info.device)
        trainer = Trainer(cfg, info, model, train_set, pretrain_loss,
                          make_groups=lambda m: param_groups(m, cfg.weight_decay),
                          model_config=model_config_dict(model), kind="pretrain")
        return trainer.fit(claim=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, PretrainConfig)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(PretrainConfig, args)
    summary = run_distributed(train_pretrain, cfg)
    if summary is not None:
        print(f"pretraining done: step {summary['step']}, loss {summary['loss']:.4f}; checkpoint "
              f"{summary['checkpoint']}, log {cfg.output}/log.jsonl, TensorBoard {cfg.output}/tb", flush=True)
    return 0
