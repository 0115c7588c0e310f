"""Sequence operators: selective scan and depthwise causal conv1d (reference, fast PyTorch, CUDA kernels).

`selective_scan_fn` / `causal_conv1d_fn` validate their inputs and dispatch (see `dispatch.py`);
`*_ref` are the sequential oracles; `*_torch` the fast pure-PyTorch paths.
"""
from .causal_conv1d import causal_conv1d_torch
from .dispatch import BACKENDS, available_backends, causal_conv1d_fn, resolve_backend, selective_scan_fn
from .reference import causal_conv1d_ref, selective_scan_ref
from .selective_scan import selective_scan_torch

__all__ = [
    "BACKENDS", "available_backends", "resolve_backend",
    "selective_scan_fn", "selective_scan_ref", "selective_scan_torch",
    "causal_conv1d_fn", "causal_conv1d_ref", "causal_conv1d_torch",
]
