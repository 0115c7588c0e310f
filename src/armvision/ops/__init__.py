"""Sequence operators: selective scan and depthwise causal conv1d.

`selective_scan_fn` / `causal_conv1d_fn` validate their inputs and dispatch (see `dispatch.py`) to the fused CPU
kernel (`cpu_kernel.py`, `scan_cpu.py`, `csrc/`), Triton (`triton_scan.py`), mamba_ssm's CUDA kernels, or the pure
PyTorch paths (`*_torch`); `*_ref` are the sequential oracles every path is tested against. The scan is a
torch.library custom op (`scan_op.py`; the Mamba mixer's multi-direction ops: `groups_op.py`).
"""
from .causal_conv1d import causal_conv1d_torch
from .dispatch import BACKENDS, available_backends, causal_conv1d_fn, mixer_fused, resolve_backend, selective_scan_fn
from .reference import causal_conv1d_ref, selective_scan_ref
from .selective_scan import selective_scan_torch

__all__ = [
    "BACKENDS", "available_backends", "mixer_fused", "resolve_backend",
    "selective_scan_fn", "selective_scan_ref", "selective_scan_torch",
    "causal_conv1d_fn", "causal_conv1d_ref", "causal_conv1d_torch",
]
