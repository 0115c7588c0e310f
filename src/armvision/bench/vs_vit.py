"""ARM classifier vs timm's ViT of the same size, in one interleaved run: forward (eval, no grad) and train step
(forward, backward, AdamW) over a grid of precisions (fp32, bf16 autocast), image sizes and batch sizes.

Each cell builds both models at its image size, warms each up once, then alternates them (ARM, ViT, then ViT, ARM,
...) `repeats` times, timing this process's CPU time (with one thread, robust to other processes on the machine) or
wall-clock; it reports the median seconds per batch, images per second and ARM / ViT (> 1: ARM is faster): the ratio
of the medians, and the median of each round's own ratio ("paired": a round runs the two models back to back, so a
drift of the machine's speed over the run, which moves both alike, cancels in it).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, List, Optional

import torch
import torch.nn.functional as F

from ..models import create_classifier

VIT = {"tiny": "vit_tiny_patch16_224", "small": "vit_small_patch16_224", "base": "vit_base_patch16_224",
       "large": "vit_large_patch16_224", "huge": "vit_huge_patch14_224"}
PRECISIONS = ("fp32", "bf16")
MODES = ("forward", "train")
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


@dataclass
class Cell:
    precision: str
    img_size: int
    batch: int
    mode: str
    arm_s: float  # median seconds per batch
    vit_s: float
    paired: Optional[float] = None  # median over the rounds of that round's ViT time / ARM time

    @property
    def ratio(self) -> float:
        """ARM's speed over ViT's (> 1: ARM is faster)."""
        return self.vit_s / self.arm_s

    def row(self) -> dict:
        return {**asdict(self), "arm_img_s": self.batch / self.arm_s, "vit_img_s": self.batch / self.vit_s,
                "arm_over_vit": self.ratio, "paired_arm_over_vit": self.paired}


def _models(size: str, img_size: int, num_classes: int = 1000):
    import timm

    torch.manual_seed(0)
    arm = create_classifier(size, num_classes=num_classes, img_size=img_size)
    vit = timm.create_model(VIT[size], pretrained=False, num_classes=num_classes, img_size=img_size)
    return {"ARM": arm, "ViT": vit}


def _step(model: torch.nn.Module, opt, x: torch.Tensor, y: torch.Tensor, mode: str, precision: str) -> None:
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    if mode == "forward":
        model.eval()
        with torch.no_grad(), autocast:
            model(x)
        return
    model.train()
    with autocast:
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def run_cell(size: str, precision: str, img_size: int, batch: int, mode: str, repeats: int = 3,
             clock: str = "cpu", models=None) -> Cell:
    """One cell of the grid (models: the pair built for img_size, reused across cells of the same size)."""
    if precision not in PRECISIONS or mode not in MODES:
        raise ValueError(f"precision must be one of {PRECISIONS} and mode one of {MODES}")
    models = models or _models(size, img_size)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    x = torch.randn(batch, 3, img_size, img_size)
    y = torch.randint(0, 1000, (batch,))
    now = CLOCKS[clock]
    times = {k: [] for k in models}
    for rnd in range(repeats + 1):  # round 0 warms up
        for k in ("ARM", "ViT") if rnd % 2 == 0 else ("ViT", "ARM"):
            t = now()
            _step(models[k], opts[k], x, y, mode, precision)
            if rnd:
                times[k].append(now() - t)
    paired = statistics.median(v / a for a, v in zip(times["ARM"], times["ViT"]))
    return Cell(precision, img_size, batch, mode, statistics.median(times["ARM"]), statistics.median(times["ViT"]),
                paired)


def run_grid(size: str = "base", precisions: Iterable[str] = ("fp32",), img_sizes: Iterable[int] = (224,),
             batches: Iterable[int] = (8,), modes: Iterable[str] = MODES, repeats: int = 3, clock: str = "cpu",
             report: Optional[Callable[[Cell], None]] = None) -> List[Cell]:
    """Every (precision, image size, batch, mode) cell; the models are built once per image size."""
    cells = []
    for img in img_sizes:
        models = _models(size, img)
        for precision in precisions:
            for batch in batches:
                for mode in modes:
                    cell = run_cell(size, precision, img, batch, mode, repeats, clock, models)
                    cells.append(cell)
                    if report:
                        report(cell)
    return cells


def format_cell(cell: Cell) -> str:
    return (f"{cell.precision:>4} {cell.img_size:>5} px  batch {cell.batch:<3} {cell.mode:<7}  "
            f"ARM {cell.arm_s * 1e3:9.1f} ms ({cell.batch / cell.arm_s:7.2f} img/s)  "
            f"ViT {cell.vit_s * 1e3:9.1f} ms ({cell.batch / cell.vit_s:7.2f} img/s)  ARM / ViT {cell.ratio:5.2f}"
            + ("" if cell.paired is None else f" (paired {cell.paired:.2f})"))
