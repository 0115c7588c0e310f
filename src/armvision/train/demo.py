"""`armvision demo` (`make run`): pretrain a tiny ARM on the embedded digits, finetune it, plot the curves.

A few minutes on 2 CPU cores: the pretraining loss falls visibly, then the finetuned classifier reaches far
above chance (10 classes). Prints where the checkpoints, logs, TensorBoard events and loss-curve PNG are.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .config import FinetuneConfig, PretrainConfig

# The tiny demo model: 32 px digits, 8 px patches -> 4x4 patches, clusters of 2x2 patches -> 4 clusters.
MODEL = dict(model="tiny", embed_dim=64, depth=4, img_size=32, patch_size=8)


def demo_configs(output: Path, pretrain_epochs: int, finetune_epochs: int, device: str, num_workers: int,
                 max_steps: int | None = None) -> tuple[PretrainConfig, FinetuneConfig]:
    """The two runs of the demo (pretraining recipe of the reference, scaled down; lighter finetuning)."""
    common = dict(**MODEL, device=device, num_workers=num_workers, batch_size=64, max_steps=max_steps,
                  log_every=10, save_every=200, overwrite=True)  # a re-run moves the previous demo aside
    pt = PretrainConfig(**common, decoder_embed_dim=64, decoder_depth=2, cluster_size=2, epochs=pretrain_epochs,
                        warmup_epochs=1, blr=1e-2, output=str(output / "pretrain"))
    ft = FinetuneConfig(**common, init=str(output / "pretrain" / "checkpoint-last.pth"), epochs=finetune_epochs,
                        warmup_epochs=1, blr=2e-2, layer_decay=0.75, drop_path=0.05, ema_decay=0.99, mixup=0.0,
                        cutmix=0.0, smoothing=0.1, auto_augment=None, reprob=0.0, min_scale=0.6, hflip=0.0,
                        output=str(output / "finetune"))
    return pt, ft


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..argcheck import DEVICE, NONNEG_INT, POS_INT

    parser.add_argument("--output", default="runs/demo", help="output folder (default: runs/demo); a previous demo "
                        "there is moved aside to OUTPUT/pretrain.old-DATE-TIME etc., never deleted")
    parser.add_argument("--pretrain-epochs", type=POS_INT, default=12, help="pretraining epochs (default: 12)")
    parser.add_argument("--finetune-epochs", type=POS_INT, default=4, help="finetuning epochs (default: 4)")
    parser.add_argument("--max-steps", type=POS_INT, default=None, help="cap each run at N steps (smoke tests)")
    parser.add_argument("--device", type=DEVICE, default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--num-workers", type=NONNEG_INT, default=1, help="data-loading workers (default: 1)")


def run(args: argparse.Namespace) -> int:
    from ..eval.plots import plot_runs
    from .finetune import train_finetune
    from .pretrain import train_pretrain

    import os

    import torch

    from ..argcheck import check_output_dir

    out = check_output_dir(args.output, "--output")
    # Leave one core per data worker: oversubscribed OpenMP threads crawl on a small shared CPU.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - args.num_workers))
    pt, ft = demo_configs(out, args.pretrain_epochs, args.finetune_epochs, args.device, args.num_workers,
                          args.max_steps)
    print(f"armvision demo: pretrain a tiny ARM ({MODEL['embed_dim']} wide, {MODEL['depth']} layers, "
          f"{MODEL['img_size']} px) on the embedded digits, then finetune it. Output: {out}", flush=True)
    t0 = time.time()
    s_pt = train_pretrain(pt)
    t1 = time.time()
    s_ft = train_finetune(ft)
    t2 = time.time()
    plots = plot_runs([pt.output, ft.output], out / "plots")
    m = s_ft["metrics"]
    print("\n".join([
        "",
        f"pretraining: {s_pt['step']} steps in {t1 - t0:.0f} s, final loss {s_pt['loss']:.3f}",
        f"finetuning:  {s_ft['step']} steps in {t2 - t1:.0f} s, val top-1 {m['acc1']:.1f}% "
        f"(EMA {m.get('ema_acc1', float('nan')):.1f}%, best {s_ft['best']:.1f}%; chance 10%)",
        f"checkpoints: {pt.output}/checkpoint-last.pth, {ft.output}/checkpoint-last.pth, "
        f"{ft.output}/checkpoint-best.pth",
        f"logs:        {pt.output}/log.jsonl, {ft.output}/log.jsonl (configs: config.yaml next to them)",
        f"TensorBoard: tensorboard --logdir {out}",
        f"curves:      {', '.join(str(p) for p in plots)}",
    ]), flush=True)
    return 0
