"""Sequence operators: selective scan and depthwise causal conv1d (reference, fast PyTorch, CUDA kernels)."""
from .reference import causal_conv1d_ref, selective_scan_ref

# Dispatching entry points (the fast path lands here; until then the reference serves).
selective_scan_fn = selective_scan_ref
causal_conv1d_fn = causal_conv1d_ref

__all__ = ["selective_scan_fn", "selective_scan_ref", "causal_conv1d_fn", "causal_conv1d_ref"]
