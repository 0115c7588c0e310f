"""FLOPs per image for `armvision bench model`: torch's FlopCounterMode (plus CPU fused attention, which it counts
as 0) with the selective scan run through its sequential reference, and an analytic count of the scan's elementwise
work (`scan_flops`), which FlopCounterMode does not see.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .common import scan_backend


def _attn_flops(q: tuple, k: tuple, v: tuple) -> int:
    """Two batched matmuls of attention: (s_q x d) @ (d x s_k) and (s_q x s_k) @ (s_k x d_v)."""
    *bh, s_q, d = q
    n = 1
    for x in bh:
        n *= x
    return 2 * n * s_q * k[-2] * d + 2 * n * s_q * k[-2] * v[-1]


def _sdpa_cpu_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return _attn_flops(query, key, value)


def _sdpa_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return 2 * _attn_flops(query, key, value)  # grads of q, k, v and of the scores: 4 matmuls


def flop_counter():
    """FlopCounterMode, plus CPU fused attention, which torch's table leaves at zero (torch 2.x)."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_forward
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward
    return FlopCounterMode(display=False, custom_mapping=mapping)


@contextlib.contextmanager
def reference_scan(model: nn.Module):
    """Run `model`'s selective scans and causal convs through armvision's sequential reference (scan backend
    "ref") while counting FLOPs.

    The fast paths do extra matmuls of their own (e.g. cumulative sums as triangular matmuls) that FlopCounterMode
    would count as model FLOPs, and fused CUDA kernels hide everything; the reference does only the model's math
    (its read-out y = C.h is counted as a batched matmul), so counts do not depend on the backend.
    """
    with scan_backend(model, "ref"):
        yield


def scan_flops(model: nn.Module, run_forward) -> float:
    """Analytic FLOPs of the selective scan's elementwise work in one forward, found with hooks on Mamba mixers.

    A mixer is a module owning A_log-style parameters of shape (d_inner, d_state), one per scan direction.
    Per direction, token and (channel, state) pair the recurrence does dt*A, exp, dt*u*B, and the state update
    h*dA + dBu (2): 6 FLOPs; per (token, channel) softplus(dt), the D skip and the silu(z) gate add ~5 and the
    depthwise causal conv 2*d_conv (the reference does it elementwise). The read-out y = C.h (2 per state) is
    left out: under `reference_scan` it is a batched matmul that FlopCounterMode counts.
    """
    total = 0.0
    hooks = []

    def is_a_log(name: str, p: torch.Tensor) -> bool:
        return name.startswith("A") and name.endswith("log") and p.ndim == 2

    def hook(mod, args, kwargs, _out):
        nonlocal total
        x = args[0] if args else next(iter(kwargs.values()))  # (B, L, D)
        for name, p in mod.named_parameters(recurse=False):
            if is_a_log(name, p):
                d_inner, d_state = p.shape
                total += x.shape[0] * x.shape[1] * d_inner * (6 * d_state + 5 + 2 * getattr(mod, "d_conv", 4))

    for mod in model.modules():
        if any(is_a_log(n, p) for n, p in mod.named_parameters(recurse=False)):
            hooks.append(mod.register_forward_hook(hook, with_kwargs=True))
    try:
        run_forward()
    finally:
        for h in hooks:
            h.remove()
    return total
