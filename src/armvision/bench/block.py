"""`armvision bench block`: one MambaMLP block (LayerNorm, Mamba mixer, SwiGLU), forward + backward, with each scan
backend and with the recurrence replaced by `u * silu(z)` (the block's cost without the scan), measured
interleaved in one run so that the ratios compare like with like.

Shapes: ARM-B pretraining (1 causal direction, L = 128) and finetuning (4 directions around the middle cls token,
L = 197 on a 14 x 14 grid), batch 8, width 768.
"""
from __future__ import annotations

import statistics
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..nn import MambaMixer, MambaMLPBlock
from ..nn import mamba as mamba_module
from ..ops import available_backends
from ..ops.dispatch import ENV_BACKEND
from .common import cpu_name, env_var
from .scan import CLOCKS

# name -> (directions, L, grid, cls_index)
CASES = {
    "pretrain": (1, 128, None, None),
    "finetune": (4, 197, (14, 14), 98),
}


@contextmanager
def scan_backend(name: str):
    """Force a backend ("cpu", "torch", ...), or "none": the scan replaced by u * silu(z)."""
    old_fn = mamba_module.selective_scan_fn
    if name == "none":
        mamba_module.selective_scan_fn = lambda u, delta, A, B, C, D=None, z=None, **kw: u * F.silu(z)
    try:
        with env_var(ENV_BACKEND, "torch" if name == "none" else name):
            yield
    finally:
        mamba_module.selective_scan_fn = old_fn


def make_step(block: MambaMLPBlock, x: torch.Tensor, kwargs: dict, backend: str) -> Callable[[], None]:
    def step():
        with scan_backend(backend):
            block(x, **kwargs).sum().backward()
        x.grad = None
        block.zero_grad(set_to_none=True)
    return step


def measure(case: str, dim: int, batch: int, backends: List[str], warmup: int, repeats: int, clock: str) -> Dict:
    """Median fwd+bwd seconds of one block per backend, the backends timed in interleaved rounds."""
    directions, L, hw, cls_index = CASES[case]
    torch.manual_seed(0)
    block = MambaMLPBlock(dim, MambaMixer(dim, directions=directions))
    x = torch.randn(batch, L, dim, requires_grad=True)
    kwargs = {"hw": hw, "cls_index": cls_index} if directions == 4 else {}
    steps = {b: make_step(block, x, kwargs, b) for b in backends}
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
