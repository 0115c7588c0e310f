"""The public entry points: check the arguments, resolve the backend once (resolve.py), run its room (backends/)
through the custom ops (custom_ops.py).

Where a room has no implementation of its own, the fallbacks live here and nowhere else:
- the multi-direction scan (`selective_scan_directions`) on a room without one ("ref", "torch", "cuda"; "triton" on
  CUDA unless ARMVISION_TRITON_DIRECTIONS=1): one single scan per direction on that backend, each direction's gate
  z gathered into its scan order, the outputs put back at their raster positions and summed (`_per_direction`);
- the mixer's conv in every direction's order (`causal_conv1d_directions`) on a room without one (all but "cpu"):
  one conv per direction (`_conv_per_direction`) with `CONV_ROOM`'s conv: "ref" -> the reference, "cuda" and
  "triton" -> the causal-conv1d package's kernel where it is installed (widths 2..4), everything else -> "torch";
- while `scan_decomposed.decomposed_scan()` is active (ONNX export), both run in standard ops.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from . import checks, custom_ops, scan_decomposed
from .backends import room
from .backends.ref import selective_scan_ref
from .backends.torch_scan import selective_scan_torch
from .resolve import resolve_backend, runs_directions

CONV_ROOM = {"ref": "ref", "torch": "torch", "cpu": "torch", "triton": "cuda", "cuda": "cuda"}


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
    if return_last_state. `backend`: see resolve.py (None / "auto": the automatic choice). `chunk_size` and
    `compile` (torch.compile of the chunk kernels) only affect the "torch" backend. Every backend but the plain
    "ref" oracle runs through the custom op armvision::selective_scan_fwd, so torch.compile and torch.export see
    one op.
    """
    checks.scan(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend("selective_scan", backend, u.is_cuda, u.dtype, A.shape[1])
    if name == "torch" and (chunk_size is not None or compile is not None) and B.dim() == 3 and C.dim() == 3:
        return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                    chunk_size=chunk_size, compile=compile)  # the PyTorch path's tuning knobs
    return _scan(name, u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), return_last_state)


def _scan(name: str, u, delta, A, B, C, D, z, delta_bias, softplus: bool, return_last_state: bool):
    """The single scan on the resolved backend `name` (arguments already checked)."""
    if name == "ref":  # the oracle stays plain autograd over plain ops (traceable, and FLOP counters see its math)
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state)
    out, last, _ = custom_ops.selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus, name)
    return (out, last) if return_last_state else out


def selective_scan_directions(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                              delta_bias: Tensor, index: Optional[Tensor] = None, *, scale: float = 1.0,
                              backend: Optional[str] = None, dt_weight: Optional[Tensor] = None) -> Tensor:
    """The Mamba mixer's G scan directions over one sequence (softplus dt, one gate z shared by all directions).

    u, delta: (G, batch, L, Dg) in each direction's scan order (channels contiguous is the fast case); B, C:
    (G, batch, L, N) in scan order; A: (G * Dg, N); D, delta_bias: (G * Dg,); z: (batch, L, Dg) in raster order;
    index (G, L): raster position of direction g's step t (None: every direction in raster order). Returns
    scale * silu(z) * sum_g (y_g + D_g u_g) as (batch, L, Dg), in one call where the backend's room has the
    multi-direction scan ("cpu"; "triton", see backends/triton.py), else one scan per direction. When no input
    needs a gradient (inference, torch.no_grad), the one-call rooms keep nothing for a backward.

    dt_weight (G, Dg, R): the mixer's dt projection. `delta` is then its input x (G, batch, L, R) (a strided view
    is fine) and each direction's delta is x_g dt_weight_g^T: made inside the "cpu" room's kernel where x is float32
    and N = 16 (the mixer's form), block by block where the scan reads it (the (G, batch, L, Dg) delta is never
    stored, nor kept for the backward); otherwise by one batched product before the scan (bfloat16: that product
    runs on the CPU's bf16 matrix units, AMX where it has them, faster than the kernel's float32 sums). Gradients
    flow to x and dt_weight either way.
    """
    checks.directions(u, delta, A, B, C, D, z, delta_bias, index, dt_weight)
    if not (math.isfinite(scale) and scale != 0.0):
        raise ValueError(f"selective_scan_directions: scale must be a finite nonzero number, got {scale!r}")
    name = None if scan_decomposed.active() else resolve_backend("selective_scan", backend, u.is_cuda, u.dtype,
                                                                 A.shape[1])
    one_call = name is not None and runs_directions(name, u.is_cuda)
    inside = one_call and room(name).DT_PROJECTION and A.shape[1] == 16 and delta.dtype == torch.float32
    if dt_weight is not None and not inside:
        delta, dt_weight = project_dt(delta, dt_weight), None
    if name is None:  # exporting to ONNX: standard ops instead of the custom ops
        y = scan_decomposed.directions_scan(u, delta, A, B, C, D, z, delta_bias, index)
        return y if scale == 1.0 else y * scale
    index = None if index is None else index.to(torch.int32)
    if one_call:
        save = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias, dt_weight))
        return custom_ops.selective_scan_directions_fwd(u, delta, A, B, C, D, z, delta_bias, index, float(scale),
                                                        save, name, dt_weight)[0]
    y = _per_direction(name, u, delta, A, B, C, D, z, delta_bias, index)
    return y if scale == 1.0 else y * scale


def project_dt(x: Tensor, dt_weight: Tensor) -> Tensor:
    """delta (G, batch, L, Dg) = x (G, batch, L, R) dt_weight^T per direction (dt_weight (G, Dg, R)), one batched
    product over the directions: the dt projection where the scan's room does not make it inside."""
    G, batch, L, R = x.shape
    return torch.matmul(x.reshape(G, batch * L, R), dt_weight.transpose(1, 2).to(x.dtype)).view(G, batch, L, -1)


def _per_direction(name: str, u, delta, A, B, C, D, z, delta_bias, index) -> Tensor:
    """The multi-direction scan as G single scans on backend `name`: each direction's gate in its scan order,
    each output back at its raster positions, summed."""
    G, batch, L, Dg = u.shape
    total = None
    for g in range(G):
        sl = slice(g * Dg, (g + 1) * Dg)
        order = None if index is None else index[g].long()
        zg = z if order is None else z.index_select(1, order)  # (batch, L, Dg) in direction g's order
        y = _scan(name, u[g].transpose(1, 2), delta[g].transpose(1, 2), A[sl], B[g].transpose(1, 2),
                  C[g].transpose(1, 2), D[sl], zg.transpose(1, 2), delta_bias[sl], True, False).transpose(1, 2)
        if order is not None:  # back to raster order
            y = torch.zeros_like(y).index_copy(1, order, y)
        total = y if total is None else total + y
    return total


def causal_conv1d_fn(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: Optional[str] = None,
                     *, backend: Optional[str] = None) -> Tensor:
    """Depthwise causal conv1d. x: (batch, D, L); weight: (D, width); bias: (D,); activation None/"silu"/"swish"."""
    checks.conv(x, weight, bias, activation)
    name = resolve_backend("causal_conv1d", backend, x.is_cuda)
    if name == "cuda" and backend in (None, "auto") and weight.shape[1] not in room("cuda").CONV_WIDTHS:
        name = "torch"  # the kernel supports widths 2..4 only; auto falls back silently
    return room(name).conv(x, weight, bias, activation)


def causal_conv1d_directions(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor] = None, *,
                             backend: Optional[str] = None) -> Tensor:
    """silu(depthwise causal conv) of x (batch, L, Dg) visited in G orders: weight (G * Dg, width), bias (G * Dg,),
    index (G, L) raster positions of each order's steps (None: raster order). Returns (G, batch, L, Dg) in scan
    order, ready for `selective_scan_directions`. `backend` names a scan backend (the mixer passes the one it
    resolved); the conv it runs is that room's, else CONV_ROOM's (see the module docstring)."""
    checks.conv_directions(x, weight, bias, index)
    if scan_decomposed.active():
        return _conv_per_direction("torch", x, weight, bias, index)
    name = resolve_backend("selective_scan", backend, x.is_cuda, x.dtype)
    index = None if index is None else index.to(torch.int32)
    if room(name).conv_directions_fwd is not None:
        return custom_ops.causal_conv1d_directions_fwd(x if x.stride(-1) == 1 else x.contiguous(), weight, bias,
                                                       index)
    conv = CONV_ROOM[name]
    if conv == "cuda" and (room("cuda").kernel("causal_conv1d") is None or not x.is_cuda
                           or weight.shape[1] not in room("cuda").CONV_WIDTHS):
        conv = "torch"
    return _conv_per_direction(conv, x, weight, bias, index)


def _conv_per_direction(name: str, x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor]) -> Tensor:
    """One conv + SiLU per direction on room `name`'s conv: gather x into the order, convolve (batch, Dg, L)."""
    Dg = x.shape[-1]
    outs = []
    for g in range(weight.shape[0] // Dg):
        xg = x if index is None else x.index_select(1, index[g].long())  # (batch, L, Dg) in order g
        sl = slice(g * Dg, (g + 1) * Dg)
        outs.append(room(name).conv(xg.transpose(1, 2), weight[sl], bias[sl], "silu").transpose(1, 2))
    return torch.stack(outs)  # (G, batch, L, Dg)


def silu_mul(a: Tensor, b: Tensor, bias_a: Optional[Tensor] = None, bias_b: Optional[Tensor] = None, *,
             backend: Optional[str] = None) -> Tensor:
    """silu(a + bias_a) * (b + bias_b), SwiGLU's gate (biases over the last dimension, optional; a Linear layer's bias
    added here costs no pass of its own): in one pass each way where the backend's room has it (the fused CPU
    kernel; float32 / bfloat16, other dtypes through float32), else as torch ops."""
    if a.shape != b.shape:
        raise ValueError(f"silu_mul: a has shape {tuple(a.shape)} but b has {tuple(b.shape)}; they must match")
    for name, t in (("bias_a", bias_a), ("bias_b", bias_b)):
        if t is not None and tuple(t.shape) != (a.shape[-1],):
            raise ValueError(f"silu_mul: {name} has shape {tuple(t.shape)}; it must be ({a.shape[-1]},)")
    checks.same_device("silu_mul", a, b=b, bias_a=bias_a, bias_b=bias_b)
    if not scan_decomposed.active() and a.dtype == b.dtype and a.is_floating_point() and a.dim() >= 1:
        name = resolve_backend("selective_scan", backend, a.is_cuda, a.dtype)
        if room(name).silu_mul_fwd is not None:
            return custom_ops.silu_mul(a, b, bias_a, bias_b)
    a = a if bias_a is None else a + bias_a.to(a.dtype)
    b = b if bias_b is None else b + bias_b.to(b.dtype)
    return torch.nn.functional.silu(a) * b


__all__ = ["selective_scan_fn", "selective_scan_directions", "causal_conv1d_fn", "causal_conv1d_directions",
           "silu_mul"]
