"""The "cuda" room: mamba_ssm's selective-scan kernel and the causal-conv1d package's conv kernel, on CUDA tensors.

Each package is imported once, lazily; one that cannot be imported (not installed, or built against another
torch / CUDA) counts as absent. Stateless: the custom op's backward recomputes the kernel under autograd. No
multi-direction forms of its own (the API runs one scan / conv per direction).
"""
from __future__ import annotations

import importlib
from typing import Callable, Optional

KERNELS = {  # op -> (module, attribute, pip package)
    "selective_scan": ("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn", "mamba-ssm"),
    "causal_conv1d": ("causal_conv1d", "causal_conv1d_fn", "causal-conv1d"),
}
CONV_WIDTHS = (2, 3, 4)  # the conv kernel's supported widths
_cache: dict = {}


def kernel(op: str) -> Optional[Callable]:
    """The kernel function of `op` ("selective_scan" or "causal_conv1d"), or None when its package is absent."""
    if op not in _cache:
        module, attr, _ = KERNELS[op]
        try:
            _cache[op] = getattr(importlib.import_module(module), attr)
        except Exception:  # not installed, or built against another torch/CUDA: treat as absent
            _cache[op] = None
    return _cache[op]


def package(op: str) -> str:
    """The pip package that provides `op`'s kernel."""
    return KERNELS[op][2]


def scan(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state):
    return kernel("selective_scan")(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state)


def conv(x, weight, bias=None, activation=None):
    return kernel("causal_conv1d")(x, weight, bias, activation=activation)


# ---------------------------------------------------------------------------------------------------------
# The room's functions (see backends/__init__.py)
# ---------------------------------------------------------------------------------------------------------
KEEPS_STATE = False
DT_PROJECTION = False
scan_fwd = scan_bwd = scan_meta = seq_grad_meta = None
directions_fwd = directions_bwd = directions_meta = directions_grad_meta = None
conv_directions_fwd = conv_directions_bwd = None
silu_mul_fwd = silu_mul_bwd = None  # the gate runs as torch ops (armvision.ops.api.silu_mul)
