"""ARM classifier vs timm ViT at the same size: forward (eval, no grad) and train-step (forward, backward, AdamW)
images/s, interleaved (ARM, ViT, then ViT, ARM, ...), one thread, this process's CPU time, medians after one
warm-up round; prints ARM / ViT. For a shared machine, where `armvision bench model` (wall-clock, fresh processes,
FLOP counts through the slow reference scan) is too noisy or too slow.

    python benchmarks/arm_vs_vit.py --size base --batch 8 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from armvision.models import create_classifier  # noqa: E402

VIT = {"tiny": "vit_tiny_patch16_224", "small": "vit_small_patch16_224", "base": "vit_base_patch16_224",
       "large": "vit_large_patch16_224"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(VIT), default="base")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    opts = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    models = {"ARM": create_classifier(opts.size, num_classes=1000, img_size=opts.img_size),
              "ViT": timm.create_model(VIT[opts.size], pretrained=False, num_classes=1000, img_size=opts.img_size)}
    optims = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    x = torch.randn(opts.batch, 3, opts.img_size, opts.img_size)
    y = torch.randint(0, 1000, (opts.batch,))

    def forward(k: str) -> None:
        models[k].eval()
        with torch.no_grad():
            models[k](x)

    def train(k: str) -> None:
        models[k].train()
        F.cross_entropy(models[k](x), y).backward()
        optims[k].step()
        optims[k].zero_grad(set_to_none=True)

    times = {(k, mode): [] for k in models for mode in ("forward", "train")}
    for rnd in range(opts.repeats + 1):
        for k in ("ARM", "ViT") if rnd % 2 == 0 else ("ViT", "ARM"):
            for mode, fn in (("forward", forward), ("train", train)):
                t = time.process_time()
                fn(k)
                if rnd:  # round 0 warms up
                    times[(k, mode)].append(time.process_time() - t)
    print(f"{opts.size}, {opts.img_size} px, batch {opts.batch}, 1 thread, CPU time, median of {opts.repeats}")
    for mode in ("forward", "train"):
        arm, vit = (opts.batch / statistics.median(times[(k, mode)]) for k in ("ARM", "ViT"))
        print(f"{mode}: ARM {arm:.2f} img/s, ViT {vit:.2f} img/s, ARM / ViT {arm / vit:.2f}")


if __name__ == "__main__":
    main()
