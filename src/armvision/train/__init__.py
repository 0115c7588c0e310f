"""Training: `armvision pretrain`, `armvision finetune` and `armvision demo` on one loop (engine.Trainer).

config (dataclasses <- YAML <- flags), optim (AdamW groups, layer decay), schedule (warmup + cosine), checkpoint
(atomic, weights_only-safe, RNG states), distributed (torchrun DDP / FSDP, global batch sampler), logging
(log.jsonl, TensorBoard, progress).
"""
from .config import FinetuneConfig, PretrainConfig
from .finetune import train_finetune
from .logging import format_duration
from .pretrain import train_pretrain

__all__ = ["FinetuneConfig", "PretrainConfig", "format_duration", "train_finetune", "train_pretrain"]
