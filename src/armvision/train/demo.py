"""The demo (`armvision demo`, `make run`): pretrain a tiny ARM on the embedded digits, finetune it, plot the curves.

A few minutes on 2 CPU cores: the pretraining loss falls visibly, then the finetuned classifier reaches far
above chance (10 classes). Its settings are the presets configs/demo_pretrain.yaml and configs/demo_finetune.yaml.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..fields import Layer
from .config import FinetuneConfig, PretrainConfig, load_config_file

PRESETS = {"pretrain": "demo_pretrain", "finetune": "demo_finetune"}


def demo_configs(output: Path, overrides: Optional[dict[str, dict[str, Any]]] = None
                 ) -> tuple[PretrainConfig, FinetuneConfig]:
    """The two runs of the demo: the presets, writing under `output`, with `overrides[step]` (e.g. epochs) on top."""
    overrides = overrides or {}
    cfgs = []
    for step, cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig)):
        paths = {"output": str(output / step)}
        if step == "finetune":
            paths["init"] = str(output / "pretrain" / "checkpoint-last.pth")
        extra = {**paths, **overrides.get(step, {})}
        cfgs.append(cls.from_layers([load_config_file(PRESETS[step]), Layer(extra, "demo")]))
    return cfgs[0], cfgs[1]


def run_demo(pt: PretrainConfig, ft: FinetuneConfig, out: Path, say: Callable[[str], None] = print) -> None:
    """Pretrain, finetune, plot; `say` what was done and where the checkpoints, logs and curves are."""
    import torch

    from ..eval.plots import plot_runs
    from .finetune import train_finetune
    from .pretrain import train_pretrain

    # Leave one core per data worker: oversubscribed OpenMP threads crawl on a small shared CPU.
    from ..data.loading import resolve_num_workers

    torch.set_num_threads(max(1, (os.cpu_count() or 1) - resolve_num_workers(pt.num_workers)))
    m = pt.model
    say(f"armvision demo: pretrain a tiny ARM ({m.embed_dim} wide, {m.depth} layers, {m.img_size} px) on the "
        f"embedded digits, then finetune it. Output: {out}")
    t0 = time.time()
    s_pt = train_pretrain(pt)
    t1 = time.time()
    s_ft = train_finetune(ft)
    t2 = time.time()
    plots = plot_runs([pt.output, ft.output], out / "plots")
    acc = s_ft["metrics"]
    say("\n".join([
        "",
        f"pretraining: {s_pt['step']} steps in {t1 - t0:.0f} s, final loss {s_pt['loss']:.3f}",
        f"finetuning:  {s_ft['step']} steps in {t2 - t1:.0f} s, val top-1 {acc['acc1']:.1f}% "
        f"(EMA {acc.get('ema_acc1', float('nan')):.1f}%, best {s_ft['best']:.1f}%; chance 10%)",
        f"checkpoints: {pt.output}/checkpoint-last.pth, {ft.output}/checkpoint-last.pth, "
        f"{ft.output}/checkpoint-best.pth",
        f"logs:        {pt.output}/log.jsonl, {ft.output}/log.jsonl (configs: config.yaml next to them)",
        f"TensorBoard: tensorboard --logdir {out}",
        f"curves:      {', '.join(str(p) for p in plots)}",
    ]))
