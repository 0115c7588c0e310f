"""Sequence operators: the selective scan (single, and the Mamba mixer's several directions in one call), the
depthwise causal conv1d, and SwiGLU's gate silu(a) * b in one pass.

    api.py           the entry points: check the arguments, resolve the backend once, run it
    resolve.py       which backend runs ("auto", the ARMVISION_SCAN_BACKEND default, availability, device, dtype)
    custom_ops.py    the torch.library custom ops every fast backend runs behind (autograd, compile, export)
    backends/        one room per backend, the same functions in each: ref (the sequential oracle), torch
                     (chunked PyTorch), cpu (the fused C kernel: csrc/, cpu_kernel.py, scan_cpu.py), triton, cuda
                     (mamba_ssm's kernels)
    scan_decomposed  the multi-direction scan in standard ops, for ONNX export
"""
from .api import causal_conv1d_directions, causal_conv1d_fn, selective_scan_directions, selective_scan_fn, silu_mul
from .backends.ref import causal_conv1d_ref, selective_scan_ref
from .backends.torch import causal_conv1d_torch
from .backends.torch_scan import selective_scan_torch
from .resolve import BACKENDS, available_backends, resolve_backend

__all__ = [
    "BACKENDS", "available_backends", "resolve_backend",
    "selective_scan_fn", "selective_scan_ref", "selective_scan_torch", "selective_scan_directions",
    "causal_conv1d_fn", "causal_conv1d_ref", "causal_conv1d_torch", "causal_conv1d_directions", "silu_mul",
]
