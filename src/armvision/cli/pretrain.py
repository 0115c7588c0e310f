"""`armvision pretrain`: ARM (or MAE baseline) pretraining with the reference recipe as defaults.

    armvision pretrain --model base --data /imagenet --output runs/arm-b      # reference recipe (ARM_SPEC.md)
    armvision pretrain --config pretrain_large --data /imagenet               # a shipped preset (configs/)
    armvision pretrain --model tiny --img-size 32 --patch-size 8 --cluster-size 2 --max-steps 200   # embedded digits
    torchrun --nproc_per_node=8 -m armvision.cli pretrain --data /imagenet ...                      # DDP
"""
from __future__ import annotations

import argparse

from ..train.config import PretrainConfig
from ._config import add_config_arguments, run_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, PretrainConfig)


def run(args: argparse.Namespace) -> int:
    from ..train.pretrain import train_pretrain

    cfg, summary = run_training(PretrainConfig, args, train_pretrain)
    if summary is not None:
        tb = f", TensorBoard {cfg.output}/tb" if cfg.tensorboard else ""  # --no-tensorboard: no such folder
        print(f"pretraining done: step {summary['step']}, loss {summary['loss']:.4f}; checkpoint "
              f"{summary['checkpoint']}, log {cfg.output}/log.jsonl{tb}", flush=True)
    return 0
