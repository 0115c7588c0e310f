"""The "triton" room: the Triton kernels (triton_scan.py, triton_directions.py, _triton_kernels.py) on CUDA tensors,
or on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1 in the environment before triton is imported).

Single scan: saved = the kernels' chunk-boundary states (n_chunks, batch, D, N) fp32. Multi-direction scan: every
direction in one launch; on CPU tensors always, on CUDA tensors only where ARMVISION_TRITON_DIRECTIONS=1 (see
armvision.env): the one-launch kernel is tested in the interpreter and waits for the GPU check
(benchmarks/gpu_check.sh) before it becomes the default there, so by default the API runs one Triton scan per
direction on CUDA. No conv kernels (the API uses the "cuda" room's conv where its package is installed, else
"torch"'s).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ... import env
from . import triton_directions, triton_scan
from ._common import no_grad as _no_grad, state_dtype as _state_dtype
from .triton_scan import DEFAULT_CHUNK


def unavailable_reason(on_cuda: bool) -> Optional[str]:
    """Why the kernels cannot run on CUDA (on_cuda) or CPU tensors here, or None when they can."""
    if not triton_scan.triton_importable():
        return "needs the triton package, which cannot be imported here"
    if not on_cuda and not triton_scan.interpreter_enabled():
        return ("needs CUDA tensors (or TRITON_INTERPRET=1 in the environment before the process starts, to "
                "interpret the kernels on CPU tensors)")
    return None




# ---------------------------------------------------------------------------------------------------------
# Single scan
# ---------------------------------------------------------------------------------------------------------
KEEPS_STATE = True
DT_PROJECTION = False
scan = None


def scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus):
    out, last, saved = triton_scan.triton_scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus)
    return out.contiguous(), last.float(), saved


def scan_bwd(u, delta, A, B, C, D, z, delta_bias, softplus, saved, dout, dlast) -> List[Tensor]:
    grads = triton_scan.triton_scan_bwd(u, delta, A, B, C, D, z, delta_bias, softplus, saved, dout, dlast)
    return [_no_grad(u) if g is None else g for g in grads]


def scan_meta(u: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    batch, dim, L = u.shape
    N = A.shape[1]
    return (u.new_empty(batch, dim, L), u.new_empty(batch, dim, N, dtype=_state_dtype(u)),
            u.new_empty(-(-L // DEFAULT_CHUNK), batch, dim, N, dtype=torch.float32))


def seq_grad_meta(t: Tensor) -> Tensor:
    return t.new_empty(t.shape)


# ---------------------------------------------------------------------------------------------------------
# Multi-direction scan: every direction in one launch (triton_directions.py)
# ---------------------------------------------------------------------------------------------------------
def directions_wanted(on_cuda: bool) -> bool:
    """Whether the mixer's directions run in one launch here: ARMVISION_TRITON_DIRECTIONS, by default on CPU
    tensors (the interpreter) only."""
    wanted = env.triton_directions()
    return (not on_cuda) if wanted is None else wanted


def directions_fwd(u, delta, A, B, C, D, z, delta_bias, index, scale: float, save: bool) -> Tuple[Tensor, Tensor]:
    """The one-launch kernels (which always keep their chunk states); the output scale applied after."""
    out, saved = triton_directions.triton_directions_fwd(u, delta, A, B, C, D, z, delta_bias, index)
    return (out if scale == 1.0 else out * scale), saved


def directions_bwd(u, delta, A, B, C, D, z, delta_bias, index, scale: float, saved, dout) -> List[Tensor]:
    dout = dout if scale == 1.0 else dout * scale
    return triton_directions.triton_directions_bwd(u, delta, A, B, C, D, z, delta_bias, index, saved, dout)


def directions_meta(u: Tensor, A: Tensor, save: bool) -> Tuple[Tensor, Tensor]:
    G, batch, L, Dg = u.shape
    return (u.new_empty(batch, L, Dg),
            u.new_empty(-(-L // DEFAULT_CHUNK), batch, G * Dg, A.shape[1], dtype=torch.float32))


def directions_grad_meta(u, delta, A, B, C, D, z, delta_bias) -> List[Tensor]:
    """du / ddelta / dz contiguous, dB / dC permuted views of contiguous (batch, G, N, L), as the kernels return."""
    G, batch, L, Dg = u.shape
    return [u.new_empty(u.shape), delta.new_empty(delta.shape), A.new_empty(A.shape),
            B.new_empty(batch, G, B.shape[-1], L).permute(1, 0, 3, 2),
            C.new_empty(batch, G, C.shape[-1], L).permute(1, 0, 3, 2), D.new_empty(D.shape),
            z.new_empty(z.shape), delta_bias.new_empty(delta_bias.shape)]


# ---------------------------------------------------------------------------------------------------------
# Conv: no kernels of its own
# ---------------------------------------------------------------------------------------------------------
conv = None
conv_directions_fwd = conv_directions_bwd = None
silu_mul_fwd = silu_mul_bwd = None  # the gate runs as torch ops (armvision.ops.api.silu_mul)
