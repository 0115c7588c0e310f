"""`armvision finetune`: classification from a pretraining checkpoint (ours or the reference's).

    armvision finetune --model base --init runs/arm-b/checkpoint-last.pth --data /imagenet --output runs/ft-b
    armvision finetune --config finetune_large --init arm_large_pretrain.pth --data /imagenet
"""
from __future__ import annotations

import argparse

from ..train.config import FinetuneConfig
from ._config import add_config_arguments, run_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, FinetuneConfig)


def run(args: argparse.Namespace) -> int:
    from ..train.finetune import train_finetune

    cfg, summary = run_training(FinetuneConfig, args, train_finetune)
    if summary is not None:
        m = summary["metrics"]
        print(f"finetuning done: step {summary['step']}, val top-1 {m.get('acc1', float('nan')):.2f}% "
              f"(EMA {m.get('ema_acc1', float('nan')):.2f}%), best {summary['best']:.2f}%; checkpoints "
              f"{cfg.output}/checkpoint-last.pth and checkpoint-best.pth, log {cfg.output}/log.jsonl", flush=True)
    return 0
