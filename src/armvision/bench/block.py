"""`armvision bench block`: one MambaMLP block (LayerNorm, Mamba mixer, SwiGLU), forward + backward, with each scan
backend and with the recurrence replaced by `u * silu(z)` (the block's cost without the scan), measured
interleaved in one run so that the ratios compare like with like.

Shapes: ARM-B pretraining (1 causal direction, L = 128) and finetuning (4 directions around the middle cls token,
L = 197 on a 14 x 14 grid), batch 8, width 768.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
from contextlib import contextmanager
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..nn import MambaMixer, MambaMLPBlock
from ..nn import mamba as mamba_module
from ..ops import available_backends
from ..ops.dispatch import ENV_BACKEND
from .scan import CLOCKS, _sync

# name -> (directions, L, grid, cls_index)
CASES = {
    "pretrain": (1, 128, None, None),
    "finetune": (4, 197, (14, 14), 98),
}


@contextmanager
def scan_backend(name: str):
    """Force a backend ("cpu", "torch", ...), or "none": the scan replaced by u * silu(z)."""
    old_env, old_fn = os.environ.get(ENV_BACKEND), mamba_module.selective_scan_fn
    os.environ[ENV_BACKEND] = "torch" if name == "none" else name
    if name == "none":
        mamba_module.selective_scan_fn = lambda u, delta, A, B, C, D=None, z=None, **kw: u * F.silu(z)
    try:
        yield
    finally:
        mamba_module.selective_scan_fn = old_fn
        if old_env is None:
            os.environ.pop(ENV_BACKEND, None)
        else:
            os.environ[ENV_BACKEND] = old_env


def make_step(block: MambaMLPBlock, x: torch.Tensor, kwargs: dict, backend: str) -> Callable[[], None]:
    def step():
        with scan_backend(backend):
            block(x, **kwargs).sum().backward()
        x.grad = None
        block.zero_grad(set_to_none=True)
    return step


def measure(case: str, dim: int, batch: int, backends: List[str], warmup: int, repeats: int, clock: str) -> Dict:
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
            _sync("cpu")
            times[b].append(now() - t0)
    return {b: statistics.median(t) for b, t in times.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="block shapes")
    parser.add_argument("--dim", type=int, default=768, help="model width (768 = ARM-B)")
    parser.add_argument("--batch", type=int, default=8, help="batch size")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="scan backends to time (default: every available one but 'ref', plus 'none')")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS), help="wall or process CPU time")
    parser.add_argument("--quick", action="store_true", help="width 64, batch 2, 1 repeat (seconds)")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.dim, args.batch, args.repeats, args.warmup = 64, 2, 1, 0
    if args.repeats < 1 or args.dim < 1 or args.batch < 1:
        raise ConfigError("bench block: --repeats, --dim and --batch must be >= 1")
    usable = [b for b in available_backends() if b not in ("ref", "cuda", "triton")]
    backends = args.backends or usable + ["none"]
    unknown = [b for b in backends if b != "none" and b not in available_backends()]
    if unknown:
        raise ConfigError(f"bench block: backend(s) {unknown} not available here; choose from "
                          f"{available_backends() + ['none']}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
          f", width {args.dim}, batch {args.batch}, median of {args.repeats} (interleaved), {args.clock} clock",
          flush=True)
    print("| block | scan backend | fwd+bwd ms | / block without the scan |\n|---|---|---|---|")
    for case in args.cases:
        t = measure(case, args.dim, args.batch, backends, args.warmup, args.repeats, args.clock)
        directions, L = CASES[case][:2]
        for b, s in t.items():
            ratio = f"{s / t['none']:.2f}" if "none" in t else "-"
            label = "u * silu(z) (no recurrence)" if b == "none" else b
            print(f"| {case}: {directions} direction{'s' * (directions > 1)}, L={L} | {label} | {s * 1e3:.1f} | "
                  f"{ratio} |", flush=True)
    return 0
