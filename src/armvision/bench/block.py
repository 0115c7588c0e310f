"""`armvision bench block`: one MambaMLP block (LayerNorm, Mamba mixer, SwiGLU), forward + backward, with each scan
backend (the mixer's `scan_backend`) and with the recurrence replaced by `silu(z) * sum of (u + delta)`
(`NoScanMixer`: the block's cost without the scan, dt_proj kept), measured interleaved in one run so that the ratios
compare like with like.

Shapes: ARM-B pretraining (1 causal direction, L = 128) and finetuning (4 directions around the middle cls token,
L = 197 on a 14 x 14 grid), batch 8, width 768.
"""
from __future__ import annotations

import statistics
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..nn import MambaMixer, MambaMLPBlock
from ..ops import available_backends
from ..ops.api import project_dt
from .common import cpu_name
from .scan import CLOCKS

# name -> (directions, L, grid, cls_index)
CASES = {
    "pretrain": (1, 128, None, None),
    "finetune": (4, 197, (14, 14), 98),
}


class NoScanMixer(MambaMixer):
    """The Mamba mixer with its recurrence replaced by silu(z) * sum_g (u_g + delta_g): everything else
    (projections, dt_proj included, conv, gathers) as in the real mixer."""

    def scan(self, u, dt_in, A, b, c, D, z, bias, order, backend, dt_weight):
        return (u + project_dt(dt_in, dt_weight)).sum(0) * F.silu(z)


def make_step(block: MambaMLPBlock, x: torch.Tensor, kwargs: dict) -> Callable[[], None]:
    def step():
        block(x, **kwargs).sum().backward()
        x.grad = None
        block.zero_grad(set_to_none=True)
    return step


def make_block(dim: int, directions: int, backend: str) -> MambaMLPBlock:
    """The block on scan backend `backend`, or with the NoScanMixer for "none" (same weights: seed 0)."""
    torch.manual_seed(0)
    if backend == "none":
        return MambaMLPBlock(dim, NoScanMixer(dim, directions=directions, scan_backend="torch"))
    return MambaMLPBlock(dim, MambaMixer(dim, directions=directions, scan_backend=backend))


def measure(case: str, dim: int, batch: int, backends: List[str], warmup: int, repeats: int, clock: str) -> Dict:
    """Median fwd+bwd seconds of one block per backend, the backends timed in interleaved rounds."""
    directions, L, hw, cls_index = CASES[case]
    x = torch.randn(batch, L, dim, generator=torch.Generator().manual_seed(1), requires_grad=True)
    kwargs = {"hw": hw, "cls_index": cls_index} if directions == 4 else {}
    steps = {b: make_step(make_block(dim, directions, b), x, kwargs) for b in backends}
    for step in steps.values():
        for _ in range(warmup):
            step()
    now = CLOCKS[clock]
    times: Dict[str, list] = {b: [] for b in backends}
    for _ in range(repeats):  # interleaved: each repeat times every backend once
        for b, step in steps.items():
            t0 = now()
            step()
            times[b].append(now() - t0)
    return {b: statistics.median(t) for b, t in times.items()}


def run_block_bench(cases: Sequence[str] = tuple(CASES), dim: int = 768, batch: int = 8,
                    backends: Optional[Sequence[str]] = None, warmup: int = 1, repeats: int = 5, clock: str = "wall",
                    quick: bool = False) -> None:
    """Print the fwd+bwd time of one block per case and scan backend (default: every available one but 'ref',
    plus 'none'), and its ratio to the block without the scan. quick: width 64, batch 2, 1 repeat, no warm-up."""
    if quick:
        dim, batch, repeats, warmup = 64, 2, 1, 0
    if repeats < 1 or dim < 1 or batch < 1:
        raise ConfigError("bench block: --repeats, --dim and --batch must be >= 1")
    usable = [b for b in available_backends() if b not in ("ref", "cuda", "triton")]
    backends = list(backends or usable + ["none"])
    unknown = [b for b in backends if b != "none" and b not in available_backends()]
    if unknown:
        raise ConfigError(f"bench block: backend(s) {unknown} not available here; choose from "
                          f"{available_backends() + ['none']}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}"
          f", width {dim}, batch {batch}, median of {repeats} (interleaved), {clock} clock", flush=True)
    print("| block | scan backend | fwd+bwd ms | / block without the scan |\n|---|---|---|---|")
    for case in cases:
        t = measure(case, dim, batch, backends, warmup, repeats, clock)
        directions, L = CASES[case][:2]
        for b, s in t.items():
            ratio = f"{s / t['none']:.2f}" if "none" in t else "-"
            label = "u * silu(z) (no recurrence)" if b == "none" else b
            print(f"| {case}: {directions} direction{'s' * (directions > 1)}, L={L} | {label} | {s * 1e3:.1f} | "
                  f"{ratio} |", flush=True)
