"""Public entry points: validate once, then dispatch to a backend through the custom ops of scan_op.py.

Selective-scan backends: "ref" (sequential oracle), "torch" (chunked PyTorch, any device), "cpu" (the fused C
kernel, CPU tensors), "triton" (Triton kernels: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1), "cuda"
(mamba_ssm's kernel, CUDA tensors), "auto" (= None): on CUDA tensors mamba_ssm when importable, else Triton when
importable, else "torch"; on CPU tensors "cpu" when the kernel builds (float64 stays on the exact "torch" path),
else "torch". The environment variable ARMVISION_SCAN_BACKEND forces a backend wherever the caller left the choice
to "auto"; an explicit backend argument wins over it. causal_conv1d: "ref", "torch", "cuda" (causal_conv1d).
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, List, Optional

import torch
from torch import Tensor

from ..errors import ConfigError
from . import cpu_kernel
from .causal_conv1d import causal_conv1d_torch
from .reference import causal_conv1d_ref, expand_bc, selective_scan_ref
from .selective_scan import selective_scan_torch

BACKENDS = ("auto", "ref", "torch", "cpu", "triton", "cuda")
CONV_BACKENDS = ("auto", "ref", "torch", "cuda")
ENV_BACKEND = "ARMVISION_SCAN_BACKEND"
ENV_TRITON_GROUPS = "ARMVISION_TRITON_GROUPS"
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


def triton_available() -> bool:
    """Whether the triton package can be imported (the Triton scan then runs on CUDA tensors)."""
    from .triton_scan import triton_importable

    return triton_importable()


def _triton_on_cpu() -> bool:
    """Whether Triton's interpreter can run the kernels on CPU tensors (TRITON_INTERPRET=1 before triton's import)."""
    from .triton_scan import interpreter_enabled

    return interpreter_enabled()


def available_backends(op: str = "selective_scan") -> List[str]:
    """Backends usable here for `op` ("selective_scan" or "causal_conv1d"), e.g. ["ref", "torch", "cpu"]."""
    if op not in _KERNELS:
        raise ValueError(f"available_backends: op must be one of {sorted(_KERNELS)}, got {op!r}")
    names = ["ref", "torch"]
    if op == "selective_scan" and cpu_kernel.load() is not None:
        names.append("cpu")
    if op == "selective_scan" and (torch.cuda.is_available() or _triton_on_cpu()) and triton_available():
        names.append("triton")
    if torch.cuda.is_available() and _kernel(op) is not None:
        names.append("cuda")
    return names


def resolve_backend(op: str, backend: Optional[str], on_cuda: bool, dtype: Optional[torch.dtype] = None) -> str:
    """The concrete backend for `op` given the argument, the env var, the device and (for "cpu") the dtype.

    Under torch.compile / torch.export the choice is made once, at trace time, and baked into the graph (the
    environment variable and the kernel's availability are not guarded: set them before compiling)."""
    if torch.compiler.is_compiling():
        return _resolve_at_trace(op, backend, on_cuda, dtype)
    return _resolve(op, backend, on_cuda, dtype)


@torch.compiler.assume_constant_result
def _resolve_at_trace(op: str, backend: Optional[str], on_cuda: bool, dtype: Optional[torch.dtype]) -> str:
    """Dynamo runs this in Python at trace time (env reads, the kernel's build lock) and keeps the string."""
    return _resolve(op, backend, on_cuda, dtype)


def _resolve(op: str, backend: Optional[str], on_cuda: bool, dtype: Optional[torch.dtype] = None) -> str:
    source = "backend argument"
    if backend is None or backend == "auto":
        env = os.environ.get(ENV_BACKEND, "").strip().lower()
        backend, source = (env, f"environment variable {ENV_BACKEND}") if env else ("auto", source)
    allowed = BACKENDS if op == "selective_scan" else CONV_BACKENDS
    if backend not in allowed:
        if op == "causal_conv1d" and backend in BACKENDS:  # a scan-only backend: the conv keeps its own choice
            return "cuda" if on_cuda and _kernel(op) is not None else "torch"
        raise ConfigError(f"{op}: {source} is {backend!r}; choose one of {', '.join(allowed)}")
    if backend == "auto":
        if on_cuda:
            if _kernel(op) is not None:
                return "cuda"
            return "triton" if op == "selective_scan" and triton_available() else "torch"
        if op == "selective_scan" and dtype != torch.float64 and cpu_kernel.load() is not None:
            return "cpu"
        return "torch"
    if backend == "cuda":
        package = _KERNELS[op][2]
        if _kernel(op) is None:
            raise ConfigError(f"{op}: backend 'cuda' (from the {source}) needs the {package} package, which cannot "
                              f"be imported here; install it (pip install 'armvision[cuda]') or use backend "
                              f"'torch'")
        if not on_cuda:
            raise ConfigError(f"{op}: backend 'cuda' (from the {source}) needs CUDA tensors, got CPU tensors; "
                              f"move them to a GPU or use backend 'cpu' or 'torch'")
    if backend == "cpu":
        if on_cuda:
            raise ConfigError(f"{op}: backend 'cpu' (from the {source}) needs CPU tensors, got CUDA tensors; "
                              f"use backend 'triton', 'cuda' or 'torch'")
        if cpu_kernel.load() is None:
            raise ConfigError(f"{op}: backend 'cpu' (from the {source}) is unavailable: "
                              f"{cpu_kernel.unavailable_reason()}; use backend 'torch'")
        if dtype == torch.float64:
            return "torch"  # the kernel computes in float32; float64 keeps the exact PyTorch path
    if backend == "triton":
        if not triton_available():
            raise ConfigError(f"{op}: backend 'triton' (from the {source}) needs the triton package, which cannot "
                              f"be imported here; use backend 'torch'")
        if not on_cuda and not _triton_on_cpu():
            raise ConfigError(f"{op}: backend 'triton' (from the {source}) needs CUDA tensors (or TRITON_INTERPRET=1 "
                              f"in the environment before the process starts, to interpret the kernels on CPU "
                              f"tensors); use backend 'cpu' or 'torch'")
    return backend


def mixer_fused(on_cuda: bool, dtype: Optional[torch.dtype] = None) -> bool:
    """Whether a multi-direction mixer runs all its directions in one fused call (selective_scan_groups): always
    with the "cpu" backend; with "triton" under Triton's interpreter, and on CUDA only where
    ARMVISION_TRITON_GROUPS=1. The one-launch Triton kernel (ops/triton_groups.py) is tested in the interpreter
    but has not yet run on a GPU (the per-direction Triton kernels have, on an H200), so on CUDA it waits for
    the GPU check (benchmarks/gpu_check.sh) before it becomes the default. Decided at trace time under compile."""
    backend = resolve_backend("selective_scan", None, on_cuda, dtype)
    if backend != "triton":
        return backend == "cpu"
    return _triton_groups_wanted(on_cuda)


@torch.compiler.assume_constant_result
def _triton_groups_wanted(on_cuda: bool) -> bool:
    value = os.environ.get(ENV_TRITON_GROUPS, "").strip()
    if value not in ("", "0", "1"):
        raise ConfigError(f"environment variable {ENV_TRITON_GROUPS} is {value!r}; use 1 (one Triton launch for "
                          f"all of a mixer's directions) or 0 (one launch per direction)")
    return value == "1" if value else not on_cuda


def _torch_any_form(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state):
    """The chunked PyTorch scan for every B/C form: grouped forms one group at a time, constant forms on the
    reference path (the chunked kernels assume B and C shared by all channels)."""
    if B.dim() == 3 and C.dim() == 3:
        return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state)
    if B.dim() == 2 or C.dim() == 2:
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state)
    batch, dim, L = u.shape
    Bx, Cx = (expand_bc(X, batch, dim, L) for X in (B, C))  # (batch, dim, N, L)
    G = max(X.shape[1] if X.dim() == 4 else 1 for X in (B, C))
    step = dim // G
    outs, lasts = [], []
    for g in range(G):
        s = slice(g * step, (g + 1) * step)
        pick = lambda t: None if t is None else t[:, s]  # noqa: E731
        out, last = selective_scan_torch(u[:, s], delta[:, s], A[s], Bx[:, g * step], Cx[:, g * step],
                                         None if D is None else D[s], pick(z),
                                         None if delta_bias is None else delta_bias[s], softplus, True)
        outs.append(out)
        lasts.append(last)
    out, last = torch.cat(outs, 1), torch.cat(lasts, 1)
    return (out, last) if return_last_state else out


def plain_scan(backend: str) -> Callable:
    """The differentiable function of a backend that keeps no state ("ref", "torch", "cuda")."""
    if backend == "ref":
        return selective_scan_ref
    if backend == "cuda":
        return _kernel("selective_scan")
    return _torch_any_form


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
        _check_bc(name, named[name], batch, dim, N, L)
    for name in ("D", "delta_bias"):
        t = named[name]
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but must be (D,) = ({dim},) from u {_shape(u)}")
    devices = {t.device for t in named.values() if t is not None}
    if len(devices) > 1:
        raise ValueError(f"{p}: all tensors must be on one device, got {sorted(str(d) for d in devices)}")


def _check_bc(name: str, t: Tensor, batch: int, dim: int, N: int, L: int) -> None:
    """B / C in one of mamba_ssm's forms: (D, N), (batch, N, L) or grouped (batch, G, N, L) with G dividing D."""
    p = "selective_scan"
    forms = f"(D, N) = ({dim}, {N}), (batch, N, L) = ({batch}, {N}, {L}) or (batch, G, N, L) with G dividing {dim}"
    if t.dim() == 2:
        if tuple(t.shape) != (dim, N):
            raise ValueError(f"{p}: {name} has shape {_shape(t)}; it must be {forms}")
        return
    if t.dim() not in (3, 4) or t.shape[0] != batch or tuple(t.shape[-2:]) != (N, L):
        raise ValueError(f"{p}: {name} has shape {_shape(t)}; it must be {forms}")
    if t.dim() == 4 and (t.shape[1] < 1 or dim % t.shape[1] != 0):
        raise ValueError(f"{p}: {name} has {t.shape[1]} groups (shape {_shape(t)}), which does not divide D={dim}")


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

    u, delta, z: (batch, D, L); A: (D, N); D, delta_bias: (D,); B, C: (D, N), (batch, N, L) or grouped
    (batch, G, N, L) (channel d uses group d // (D / G)), as in mamba_ssm.
    Returns out (batch, D, L) in u's dtype, and last_state (batch, D, N) (float32, float64 for float64 u)
    if return_last_state. `chunk_size` and `compile` (torch.compile of the chunk kernels, default from env
    ARMVISION_SCAN_COMPILE) only affect the "torch" backend. Every backend but the plain "ref" oracle runs
    through the custom op armvision::selective_scan_fwd (scan_op.py), so torch.compile and torch.export see one op.
    """
    _check_selective_scan(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend("selective_scan", backend, u.is_cuda, u.dtype)
    if name == "cpu" and A.shape[1] > cpu_kernel.MAX_STATE:
        if backend not in (None, "auto") or os.environ.get(ENV_BACKEND, "").strip():
            raise ValueError(f"selective_scan: the CPU kernel supports state sizes N <= {cpu_kernel.MAX_STATE}, "
                             f"got N={A.shape[1]} (A {_shape(A)}); use backend 'torch'")
        name = "torch"
    if name == "ref":  # the oracle stays plain autograd over plain ops (traceable, and FLOP counters see its math)
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if name == "torch" and (chunk_size is not None or compile is not None):  # tuning knobs of the PyTorch path
        if B.dim() == 3 and C.dim() == 3:
            return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                        chunk_size=chunk_size, compile=compile)
    from .scan_op import selective_scan_fwd

    out, last, _ = selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), name)
    return (out, last) if return_last_state else out


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

