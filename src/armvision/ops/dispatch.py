"""Public entry points: validate once, then dispatch to the reference, the fast PyTorch path or the CUDA kernels.

Backends: "ref" (sequential oracle), "torch" (chunked PyTorch, any device), "cuda" (mamba_ssm / causal_conv1d
kernels, CUDA tensors only), "auto" (= None): the kernel when it is importable and the tensors are on CUDA,
otherwise "torch". The environment variable ARMVISION_SCAN_BACKEND forces a backend wherever the caller left
the choice to "auto"; an explicit backend argument wins over it.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, List, Optional

import torch
from torch import Tensor

from ..errors import ConfigError
from .causal_conv1d import causal_conv1d_torch
from .reference import causal_conv1d_ref, selective_scan_ref
from .selective_scan import selective_scan_torch

BACKENDS = ("auto", "ref", "torch", "cuda")
ENV_BACKEND = "ARMVISION_SCAN_BACKEND"
_KERNELS = {  # op -> (module, attribute, pip package)
    "selective_scan": ("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn", "mamba-ssm"),
    "causal_conv1d": ("causal_conv1d", "causal_conv1d_fn", "causal-conv1d"),
}
_kernel_cache: dict = {}


def _kernel(op: str) -> Optional[Callable]:
    """The CUDA kernel function of `op`, or None when its package cannot be imported (imported once, lazily)."""
    if op not in _kernel_cache:
        module, attr, _ = _KERNELS[op]
        try:
            _kernel_cache[op] = getattr(importlib.import_module(module), attr)
        except Exception:  # not installed, or built against another torch/CUDA: treat as absent
            _kernel_cache[op] = None
    return _kernel_cache[op]


def available_backends(op: str = "selective_scan") -> List[str]:
    """Backends usable here for `op` ("selective_scan" or "causal_conv1d"), e.g. ["ref", "torch"]."""
    if op not in _KERNELS:
        raise ValueError(f"available_backends: op must be one of {sorted(_KERNELS)}, got {op!r}")
    names = ["ref", "torch"]
    if torch.cuda.is_available() and _kernel(op) is not None:
        names.append("cuda")
    return names


def resolve_backend(op: str, backend: Optional[str], on_cuda: bool) -> str:
    """The concrete backend ("ref", "torch" or "cuda") for `op` given the argument, the env var and the device."""
    source = "backend argument"
    if backend is None or backend == "auto":
        env = os.environ.get(ENV_BACKEND, "").strip().lower()
        backend, source = (env, f"environment variable {ENV_BACKEND}") if env else ("auto", source)
    if backend not in BACKENDS:
        raise ConfigError(f"{op}: {source} is {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "cuda" if on_cuda and _kernel(op) is not None else "torch"
    if backend == "cuda":
        package = _KERNELS[op][2]
        if _kernel(op) is None:
            raise ConfigError(f"{op}: backend 'cuda' (from the {source}) needs the {package} package, which cannot "
                              f"be imported here; install it (pip install 'armvision[cuda]') or use backend "
                              f"'torch'")
        if not on_cuda:
            raise ConfigError(f"{op}: backend 'cuda' (from the {source}) needs CUDA tensors, got CPU tensors; "
                              f"move them to a GPU or use backend 'torch'")
    return backend


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------
def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _check_selective_scan(u, delta, A, B, C, D, z, delta_bias) -> None:
    p = "selective_scan"
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise ValueError(f"{p}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not (t.is_floating_point()):
            raise ValueError(f"{p}: {name} must be a real floating-point tensor, got dtype {t.dtype}")
    if u.dim() != 3:
        raise ValueError(f"{p}: u must have shape (batch, D, L), got {_shape(u)}")
    batch, dim, L = u.shape
    if L < 1:
        raise ValueError(f"{p}: u has an empty sequence (L=0), shape {_shape(u)}")
    for name in ("delta", "z"):
        t = named[name]
        if t is not None and t.shape != u.shape:
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but u has shape {_shape(u)}; they must match")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"{p}: A has shape {_shape(A)} but must be (D, N) with D={dim} from u {_shape(u)}")
    N = A.shape[1]
    for name in ("B", "C"):
        t = named[name]
        if t.dim() != 3:
            raise ValueError(f"{p}: {name} must have shape (batch, N, L) = ({batch}, {N}, {L}), got {_shape(t)}")
        if t.shape[0] != batch:
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but u has batch={batch}")
        if t.shape[1] != N:
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but A has N={N}")
        if t.shape[2] != L:
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but u has L={L}")
    for name in ("D", "delta_bias"):
        t = named[name]
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but must be (D,) = ({dim},) from u {_shape(u)}")
    devices = {t.device for t in named.values() if t is not None}
    if len(devices) > 1:
        raise ValueError(f"{p}: all tensors must be on one device, got {sorted(str(d) for d in devices)}")


def _check_conv(x, weight, bias, activation) -> None:
    p = "causal_conv1d"
    if x.dim() != 3:
        raise ValueError(f"{p}: x must have shape (batch, D, L), got {_shape(x)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"{p}: weight has shape {_shape(weight)} but must be (D, width) with D={x.shape[1]} "
                         f"from x {_shape(x)}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"{p}: bias has shape {_shape(bias)} but must be (D,) = ({x.shape[1]},)")
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"{p}: activation must be None, 'silu' or 'swish', got {activation!r}")
    if x.device != weight.device or (bias is not None and bias.device != x.device):
        raise ValueError(f"{p}: x, weight and bias must be on one device")


# ---------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------
def selective_scan_fn(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
    z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
    return_last_state: bool = False, *, backend: Optional[str] = None, chunk_size: Optional[int] = None,
    compile: Optional[bool] = None,
):
    """Selective scan with mamba_ssm's semantics (real A).

    u, delta, z: (batch, D, L); A: (D, N); B, C: (batch, N, L); D, delta_bias: (D,).
    Returns out (batch, D, L) in u's dtype, and last_state (batch, D, N) (float32, float64 for float64 u)
    if return_last_state. `chunk_size` and `compile` (torch.compile of the chunk kernels, default from env
    ARMVISION_SCAN_COMPILE) only affect the "torch" backend.
    """
    _check_selective_scan(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend("selective_scan", backend, u.is_cuda)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if name == "ref":
        return selective_scan_ref(*args)
    if name == "cuda":
        return _kernel("selective_scan")(*args)
    return selective_scan_torch(*args, chunk_size=chunk_size, compile=compile)


def causal_conv1d_fn(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: Optional[str] = None,
                     *, backend: Optional[str] = None) -> Tensor:
    """Depthwise causal conv1d. x: (batch, D, L); weight: (D, width); bias: (D,); activation None/"silu"/"swish"."""
    _check_conv(x, weight, bias, activation)
    name = resolve_backend("causal_conv1d", backend, x.is_cuda)
    if name == "cuda" and backend in (None, "auto") and not 2 <= weight.shape[1] <= 4:
        name = "torch"  # the kernel supports widths 2..4 only; auto falls back silently
    if name == "ref":
        return causal_conv1d_ref(x, weight, bias, activation)
    if name == "cuda":
        return _kernel("causal_conv1d")(x, weight, bias, activation=activation)
    return causal_conv1d_torch(x, weight, bias, activation)

