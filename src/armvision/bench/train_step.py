"""`armvision bench train-step`: images/s of one pretraining step, and of data loading, to show which one bounds.

Step: one full optimizer step of the ARM pretrainer as `armvision pretrain` runs it (autocast per `--precision`,
forward + loss, backward, gradient clipping at 3.0, AdamW with the no-decay groups) on a random batch; `--warmup`
untimed steps, then `--repeats` timed ones; the median and min-max images/s are reported.

Data: the pretraining input pipeline of `armvision pretrain` (SafeImageFolder -> per-sample seeded
RandomResizedCrop(scale 0.2-1, bicubic) + flip + normalize -> DataLoader) over a temporary folder of JPEGs of
ImageNet's typical size (500x375, smooth random content), for each `--workers` count, and the embedded digits
pipeline. Images/s are counted after the first batch (worker start-up excluded). Data loading is not the bottleneck
when its images/s exceed the step's.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..models.config import SIZES
from .common import cpu_name, sync


def bench_step(size: str, img_size: int, batch_size: int, device: torch.device, precision: str, warmup: int,
               repeats: int, overrides: Optional[dict] = None) -> dict:
    """Median / min / max images/s of one pretraining optimizer step."""
    from ..models import create_pretrainer
    from ..train.engine import resolve_precision
    from ..train.optim import build_optimizer, param_groups

    torch.manual_seed(0)
    model = create_pretrainer(size, img_size=img_size, **(overrides or {})).to(device)
    opt = build_optimizer(param_groups(model, 0.05), 1e-4, (0.9, 0.95))
    dtype, use_scaler = resolve_precision(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    times = []
    for i in range(warmup + repeats):
        sync(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(x).loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    ips = [batch_size / t for t in times]
    return {"what": "pretrain step", "size": size, "img_size": img_size, "batch_size": batch_size,
            "precision": str(dtype or torch.float32).replace("torch.", ""), "img_per_s": statistics.median(ips),
            "min": min(ips), "max": max(ips), "params": sum(p.numel() for p in params)}


def make_jpeg_folder(root: Path, n: int, size: tuple[int, int] = (500, 375)) -> Path:
    """`n` JPEGs (quality 90) of smooth random content in root/train/c{0,1}/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / "train" / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BICUBIC).save(d / f"{i}.jpg", quality=90)
    return root


def bench_data(dataset: Any, batch_size: int, workers: int, epochs: int, label: str) -> dict:
    """Images/s of a DataLoader over `dataset` (after its first batch)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    n, t0 = 0, None
    for _ in range(epochs):
        for images, _ in loader:
            if t0 is None:  # exclude worker start-up and the first batch
                t0 = time.perf_counter()
                continue
            n += images.shape[0]
    dt = time.perf_counter() - (t0 or time.perf_counter())
    return {"what": "data loading", "data": label, "workers": workers, "batch_size": batch_size,
            "img_per_s": n / dt if dt > 0 else float("nan")}


def _env(device: torch.device) -> dict:
    return {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def run_train_step_bench(sizes: Sequence[str] = ("tiny", "base"), img_size: int = 192, batch_size: int = 8,
                         warmup: int = 1, repeats: int = 3, precision: str = "auto", device: str = "auto",
                         workers: Sequence[int] = (0, 1, 2), data_images: int = 128, data_batch_size: int = 32,
                         json_path: Optional[str] = None, settings: Optional[dict] = None) -> list[dict]:
    """Print (and return) images/s of one pretraining step per size, and of data loading per worker count: a folder
    of `data_images` temporary JPEGs, then the embedded digits. `settings` is recorded in the JSON as "args"."""
    from ..data import AugmentSeeded, SafeImageFolder, embedded_digits, pretrain_transform
    from ..train.distributed import pick_device

    dev = pick_device(device)
    if any(s not in SIZES for s in sizes):
        raise ConfigError(f"--sizes {list(sizes)}: choose among {' '.join(SIZES)}")
    results = []
    for size in sizes:
        r = bench_step(size, img_size, batch_size, dev, precision, warmup, repeats)
        results.append(r)
        print(f"pretrain step  {size:<5} {img_size}px batch {batch_size:<3} {r['precision']}: "
              f"{r['img_per_s']:8.1f} img/s (min {r['min']:.1f}, max {r['max']:.1f})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_jpeg_folder(Path(tmp), data_images)
        ds = AugmentSeeded(SafeImageFolder(folder / "train", transform=pretrain_transform(img_size)))
        for w in workers:
            r = bench_data(ds, data_batch_size, w, epochs=2, label="jpeg 500x375")
            results.append(r)
            print(f"data loading   jpeg 500x375 -> {img_size}px, {w} worker(s): {r['img_per_s']:8.1f} img/s",
                  flush=True)
    digits = AugmentSeeded(embedded_digits("train", 32, pretrain_transform(32)))
    r = bench_data(digits, data_batch_size, 0, epochs=1, label="embedded digits 32px")
    results.append(r)
    print(f"data loading   embedded digits 32px, 0 workers: {r['img_per_s']:8.1f} img/s", flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps({"env": _env(dev), "args": settings or {}, "results": results},
                                              indent=1))
    return results
