"""Which backend runs: the one place that turns a backend argument ("auto" or a name) into a concrete room.

Selective-scan backends: "ref" (sequential oracle), "torch" (chunked PyTorch, any device), "cpu" (the fused C
kernel, CPU tensors), "triton" (Triton kernels: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1), "cuda"
(mamba_ssm's kernel, CUDA tensors). "auto" (or None): the environment variable ARMVISION_SCAN_BACKEND when set
(armvision.env; an explicit argument wins over it), else on CUDA tensors mamba_ssm when importable, then Triton
when importable, then "torch"; on CPU tensors "cpu" when the kernel builds, else "torch". Whatever chose it, "cpu"
becomes "torch" for float64 (the kernel computes in float32); "auto" becomes "torch" for state sizes over the
kernel's maximum (an explicit "cpu" is then an error). causal_conv1d: "ref", "torch", "cuda" (the causal-conv1d
package); a scan-only name leaves the conv its own automatic choice.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from .. import env
from ..errors import ConfigError
from . import cpu_kernel
from .backends import room

BACKENDS = env.SCAN_BACKENDS
CONV_BACKENDS = ("auto", "ref", "torch", "cuda")
OPS = ("selective_scan", "causal_conv1d")


def available_backends(op: str = "selective_scan") -> List[str]:
    """Backends usable here for `op` ("selective_scan" or "causal_conv1d"), e.g. ["ref", "torch", "cpu"]."""
    if op not in OPS:
        raise ValueError(f"available_backends: op must be one of {sorted(OPS)}, got {op!r}")
    names = ["ref", "torch"]
    if op == "selective_scan" and room("cpu").unavailable_reason() is None:
        names.append("cpu")
    triton = room("triton")
    if op == "selective_scan" and (triton.unavailable_reason(False) is None
                                   or (torch.cuda.is_available() and triton.unavailable_reason(True) is None)):
        names.append("triton")
    if torch.cuda.is_available() and room("cuda").kernel(op) is not None:
        names.append("cuda")
    return names


def resolve_backend(op: str, backend: Optional[str], on_cuda: bool, dtype: Optional[torch.dtype] = None,
                    state_size: Optional[int] = None) -> str:
    """The concrete backend for `op` given the argument (None / "auto": the environment's default, else the
    automatic choice), the tensors' device, dtype and (for the scan) state size N.

    Under torch.compile / torch.export the choice is made once, at trace time, and baked into the graph (the
    environment variable and the kernel's availability are not guarded: set them before compiling)."""
    if torch.compiler.is_compiling():
        return _resolve_at_trace(op, backend, on_cuda, dtype, state_size)
    return _resolve(op, backend, on_cuda, dtype, state_size)


@torch.compiler.assume_constant_result
def _resolve_at_trace(op: str, backend: Optional[str], on_cuda: bool, dtype: Optional[torch.dtype],
                      state_size: Optional[int]) -> str:
    """Dynamo runs this in Python at trace time (env reads, the kernel's build lock) and keeps the string."""
    return _resolve(op, backend, on_cuda, dtype, state_size)


def _resolve(op: str, backend: Optional[str], on_cuda: bool, dtype: Optional[torch.dtype] = None,
             state_size: Optional[int] = None) -> str:
    if op not in OPS:
        raise ValueError(f"resolve_backend: op must be one of {sorted(OPS)}, got {op!r}")
    source, explicit = "backend argument", backend not in (None, "auto")
    default = None if explicit else env.scan_backend()
    if default is not None:
        backend, source, explicit = default, f"environment variable {env.SCAN_BACKEND}", True
    backend = backend or "auto"
    if op == "causal_conv1d":
        return _resolve_conv(backend, source, on_cuda)
    if backend not in BACKENDS:
        raise ConfigError(f"{op}: {source} is {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = _auto_scan(on_cuda, dtype)
    else:
        _check_usable(op, backend, source, on_cuda)
    if backend == "cpu" and dtype == torch.float64:
        return "torch"  # the kernel computes in float32; float64 keeps the exact PyTorch path
    if backend == "cpu" and state_size is not None and state_size > cpu_kernel.MAX_STATE:
        if explicit:
            raise ConfigError(f"{op}: the CPU kernel supports state sizes N <= {cpu_kernel.MAX_STATE}, got "
                              f"N={state_size} (backend 'cpu', from the {source}); use backend 'torch'")
        return "torch"
    return backend


def _auto_scan(on_cuda: bool, dtype: Optional[torch.dtype]) -> str:
    if on_cuda:
        if room("cuda").kernel("selective_scan") is not None:
            return "cuda"
        return "triton" if room("triton").unavailable_reason(True) is None else "torch"
    if dtype != torch.float64 and room("cpu").unavailable_reason() is None:
        return "cpu"
    return "torch"


def _check_usable(op: str, backend: str, source: str, on_cuda: bool) -> None:
    """ConfigError when an explicitly chosen backend cannot run on these tensors here."""
    where = f"{op}: backend {backend!r} (from the {source})"
    if backend == "cuda":
        if room("cuda").kernel(op) is None:
            raise ConfigError(f"{where} needs the {room('cuda').package(op)} package, which cannot be imported "
                              f"here; install it (pip install 'armvision[cuda]') or use backend 'torch'")
        if not on_cuda:
            raise ConfigError(f"{where} needs CUDA tensors, got CPU tensors; move them to a GPU or use backend "
                              f"'cpu' or 'torch'")
    if backend == "cpu":
        if on_cuda:
            raise ConfigError(f"{where} needs CPU tensors, got CUDA tensors; use backend 'triton', 'cuda' or "
                              f"'torch'")
        why = room("cpu").unavailable_reason()
        if why is not None:
            raise ConfigError(f"{where} is unavailable: {why}; use backend 'torch'")
    if backend == "triton":
        why = room("triton").unavailable_reason(on_cuda)
        if why is not None:
            alternatives = "'torch'" if on_cuda else "'cpu' or 'torch'"
            raise ConfigError(f"{where} {why}; use backend {alternatives}")


def _resolve_conv(backend: str, source: str, on_cuda: bool) -> str:
    if backend in CONV_BACKENDS and backend != "auto":
        _check_usable("causal_conv1d", backend, source, on_cuda)
        return backend
    if backend not in BACKENDS:
        raise ConfigError(f"causal_conv1d: {source} is {backend!r}; choose one of {', '.join(CONV_BACKENDS)}")
    return "cuda" if on_cuda and room("cuda").kernel("causal_conv1d") is not None else "torch"


def runs_directions(backend: str, on_cuda: bool) -> bool:
    """Whether backend `backend` runs all of the mixer's directions in one call on these tensors (its room offers
    the multi-direction scan and wants it here); else the API runs one scan per direction. At trace time under
    torch.compile the answer is baked into the graph."""
    if room(backend).directions_fwd is None:
        return False
    if torch.compiler.is_compiling():
        return _directions_at_trace(backend, on_cuda)
    return room(backend).directions_wanted(on_cuda)


@torch.compiler.assume_constant_result
def _directions_at_trace(backend: str, on_cuda: bool) -> bool:
    return room(backend).directions_wanted(on_cuda)
