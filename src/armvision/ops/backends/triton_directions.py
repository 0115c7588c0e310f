"""Several scan directions over one sequence in one Triton launch: the Triton form of the CPU kernel's
multi-direction scan (`armvision.ops.selective_scan_directions`, the Mamba mixer's path).

Semantics (as scan_cpu's multi-direction form, softplus always on), with G directions of Dg channels each:
    u, delta (G, batch, L, Dg) in each direction's scan order (any strides; contiguous channels are the fast case);
    B, C (G, batch, L, N) views, any strides; A (G * Dg, N); D, delta_bias (G * Dg,); z (batch, L, Dg) in raster
    order, shared by all directions; index (G, L) int = raster position visited by direction g at step t (None:
    every direction in raster order).
    out (batch, L, Dg) = silu(z) * sum_g (y_g + D_g u_g), y_g written at raster position index[g, t].

Kernel: the plain scan's kernels (`_triton_kernels`) with segment strides and an index map. The G * Dg channels
are cut into segments of Dg (one per direction: B_t / C_t are one (N,) vector per block), so the launch grid is
(batch, G * ceil(Dg / BLOCK_D)): every direction in one launch. Directions write the same raster positions, so
each writes its own fp32 (G, batch, L, Dg) buffer (out: gated output silu(z) (y_g + D u_g), linear in y_g;
backward: dz_g), and the host sums over g in a fixed order (torch .sum(0)): deterministic, no atomics.
Checkpoints are the plain kernel's: (n_chunks, batch, G * Dg, N) fp32, the state before each chunk of `chunk`
steps.

`triton_directions_fwd` / `triton_directions_bwd` are pure functions (no autograd); the custom ops
`armvision::selective_scan_directions_fwd/bwd` (ops/custom_ops.py) call them through the Triton room
(backends/triton.py). CPU tensors run under Triton's interpreter (TRITON_INTERPRET=1 set before triton is
imported), as for triton_scan.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import triton_scan
from .triton_scan import DEFAULT_CHUNK

__all__ = ["triton_directions_fwd", "triton_directions_bwd", "directions_ref", "DEFAULT_CHUNK"]


def _mamba_bc(X: Tensor) -> Tensor:
    """(G, batch, L, N) view -> the plain kernel's grouped form (batch, G, N, L) (a view, no copy)."""
    return X.permute(1, 0, 3, 2)


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, z: Optional[Tensor],
           index: Optional[Tensor]) -> None:
    G, batch, L, Dg = u.shape
    N = A.shape[1]
    if delta.shape != u.shape:
        raise ValueError(f"triton_directions: delta {tuple(delta.shape)} != u {tuple(u.shape)}")
    for name, X in (("B", B), ("C", C)):
        if tuple(X.shape) != (G, batch, L, N):
            raise ValueError(f"triton_directions: {name} must be (G, batch, L, N) = {(G, batch, L, N)}, "
                             f"got {tuple(X.shape)}")
    if tuple(A.shape) != (G * Dg, N):
        raise ValueError(f"triton_directions: A must be (G * Dg, N) = {(G * Dg, N)}, got {tuple(A.shape)}")
    if z is not None and tuple(z.shape) != (batch, L, Dg):
        raise ValueError(f"triton_directions: z must be (batch, L, Dg) = {(batch, L, Dg)}, got {tuple(z.shape)}")
    if index is not None and tuple(index.shape) != (G, L):
        raise ValueError(f"triton_directions: index must be (G, L) = {(G, L)}, got {tuple(index.shape)}")


def _seq_strides(x: Tensor) -> Tuple[int, int, int]:
    """(batch, channel, time) strides of a (G, batch, L, Dg) tensor (the plain kernel's argument order)."""
    return x.stride(1), x.stride(3), x.stride(2)


def _raster_strides(x: Tensor) -> Tuple[int, int, int]:
    """(batch, channel, position) strides of a (batch, L, Dg) tensor."""
    return x.stride(0), x.stride(2), x.stride(1)


def _check_bwd(u: Tensor, A: Tensor, saved: Tensor, dout: Tensor, chunk: int) -> int:
    """Checks dout and saved (from triton_directions_fwd with this chunk); returns the number of chunks."""
    G, batch, L, Dg = u.shape
    if tuple(dout.shape) != (batch, L, Dg):
        raise ValueError(f"triton_directions_bwd: dout must be (batch, L, Dg) = {(batch, L, Dg)}, "
                         f"got {tuple(dout.shape)}")
    n_chunks = -(-L // chunk)
    if tuple(saved.shape) != (n_chunks, batch, G * Dg, A.shape[1]):
        raise ValueError(f"triton_directions_bwd: saved has shape {tuple(saved.shape)}, expected "
                         f"{(n_chunks, batch, G * Dg, A.shape[1])} for chunk={chunk}")
    return n_chunks


def _index(index: Optional[Tensor], like: Tensor) -> Tuple[Tensor, int]:
    if index is None:
        return like, 0
    idx = index.to(device=like.device, dtype=torch.int32).contiguous()
    return idx, idx.stride(0)


def triton_directions_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                      z: Optional[Tensor], delta_bias: Optional[Tensor], index: Optional[Tensor],
                      chunk: int = DEFAULT_CHUNK) -> Tuple[Tensor, Tensor]:
    """(out (batch, L, Dg) in u's dtype, saved = checkpoints (n_chunks, batch, G * Dg, N) fp32)."""
    _check(u, delta, A, B, C, z, index)
    k = triton_scan._kernels()
    G, batch, L, Dg = u.shape
    N, dim = A.shape[1], G * Dg
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"triton_directions_fwd: chunk must be >= 1, got {chunk}")
    n_chunks = -(-L // chunk)
    dev = u.device
    f32 = dict(dtype=torch.float32, device=dev)
    ckpt = torch.zeros((n_chunks, batch, dim, N), **f32)
    if u.numel() == 0 or N == 0:  # nothing to launch
        with torch.no_grad():
            return directions_ref(u, delta, A, B, C, D, z, delta_bias, index), ckpt
    Bm, Cm = _mamba_bc(B), _mamba_bc(C)
    lay = triton_scan._Layout(Bm, Cm, dim, N)
    assert lay.dseg == Dg and lay.b_vary and lay.c_vary
    alloc = torch.empty if index is None else torch.zeros  # positions an index never visits stay 0
    outg = alloc((G, batch, L, Dg), **f32)  # per direction, gated, at raster positions
    last = torch.empty((batch, dim, N), **f32)  # written by the kernel, not returned
    zz = u[0] if z is None else z
    idx, s_ig = _index(index, u)
    with triton_scan._launch_ctx(u):
        k._scan_fwd_kernel[(batch, lay.n_prog)](
            *triton_scan._inputs(u, delta, A, B, C, D, zz, delta_bias),
            outg, last, ckpt, idx,
            *_seq_strides(u), *_seq_strides(delta), *_raster_strides(zz),
            outg.stride(1), outg.stride(3), outg.stride(2),
            u.stride(0), delta.stride(0), 0, outg.stride(0), s_ig,
            *A.stride(), *lay.b_strides, *lay.c_strides,
            L, N, lay.dseg, lay.nblk, lay.dpg_b, lay.dpg_c, n_chunks, batch, dim, chunk,
            **lay.flags(D, z, delta_bias, True, has_idx=index is not None),
        )
    return outg.sum(0).to(u.dtype), ckpt


def triton_directions_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                      z: Optional[Tensor], delta_bias: Optional[Tensor], index: Optional[Tensor], saved: Tensor,
                      dout: Tensor, chunk: int = DEFAULT_CHUNK) -> List[Optional[Tensor]]:
    """[du, ddelta, dA, dB, dC, dD, dz, ddelta_bias] in the inputs' dtypes and shapes (None for absent inputs):
    du, ddelta contiguous (G, batch, L, Dg); dB, dC (G, batch, L, N) views of contiguous (batch, G, N, L)
    tensors; dz contiguous (batch, L, Dg). `saved` from triton_directions_fwd with the same chunk."""
    _check(u, delta, A, B, C, z, index)
    chunk = int(chunk)
    n_chunks = _check_bwd(u, A, saved, dout, chunk)
    k = triton_scan._kernels()
    G, batch, L, Dg = u.shape
    N, dim = A.shape[1], G * Dg
    if u.numel() == 0 or N == 0:
        return triton_scan.autograd_grads(lambda *xs: directions_ref(*xs, index), (u, delta, A, B, C, D, z, delta_bias),
                                          dout)
    Bm, Cm = _mamba_bc(B), _mamba_bc(C)
    lay = triton_scan._Layout(Bm, Cm, dim, N)
    dev = u.device
    f32 = dict(dtype=torch.float32, device=dev)
    du = torch.empty((G, batch, L, Dg), dtype=u.dtype, device=dev)
    ddelta = torch.empty((G, batch, L, Dg), dtype=delta.dtype, device=dev)
    alloc = torch.empty if index is None else torch.zeros  # positions an index never visits stay 0
    dzg = None if z is None else alloc((G, batch, L, Dg), **f32)  # per direction, at raster positions
    if ddelta.stride() != du.stride() or (dzg is not None and dzg.stride() != du.stride()):
        raise AssertionError("triton_directions_bwd: du, ddelta and dz buffers must share one layout")
    dA_p = torch.empty((batch, dim, N), **f32)
    dB_p = torch.empty((batch, lay.n_prog, N, L), **f32)
    dC_p = torch.empty((batch, lay.n_prog, N, L), **f32)
    dD_p = None if D is None else torch.empty((batch, dim), **f32)
    db_p = None if delta_bias is None else torch.empty((batch, dim), **f32)
    steps = min(chunk, L)
    scratch = torch.empty(batch * lay.n_prog * (steps + 1) * lay.block_d * lay.block_n, **f32)
    ckpt = saved.contiguous()
    zz = u[0] if z is None else z
    idx, s_ig = _index(index, u)
    with triton_scan._launch_ctx(u):
        k._scan_bwd_kernel[(batch, lay.n_prog)](
            *triton_scan._inputs(u, delta, A, B, C, D, zz, delta_bias),
            ckpt, dout, ckpt, scratch,
            du, ddelta, du if dzg is None else dzg, dA_p, dB_p, dC_p,
            dA_p if dD_p is None else dD_p, dA_p if db_p is None else db_p, idx,
            *_seq_strides(u), *_seq_strides(delta), *_raster_strides(zz), *_raster_strides(dout),
            u.stride(0), delta.stride(0), 0, 0, s_ig,
            du.stride(1), du.stride(0), du.stride(3), du.stride(2),
            *A.stride(), *lay.b_strides, *lay.c_strides,
            L, N, lay.dseg, lay.nblk, lay.dpg_b, lay.dpg_c, n_chunks, batch, dim, steps,
            **lay.flags(D, z, delta_bias, True, has_idx=index is not None), HAS_GLAST=False,
        )
    dA = dA_p.sum(0).to(A.dtype)
    dB = triton_scan._reduce_bc(dB_p, Bm, True, batch).permute(1, 0, 3, 2)
    dC = triton_scan._reduce_bc(dC_p, Cm, True, batch).permute(1, 0, 3, 2)
    dD = None if D is None else dD_p.sum(0).to(D.dtype)
    dz = None if z is None else dzg.sum(0).to(z.dtype)
    ddb = None if delta_bias is None else db_p.sum(0).to(delta_bias.dtype)
    return [du, ddelta, dA, dB, dC, dD, dz, ddb]


# ---------------------------------------------------------------------------------------------------------
# Reference in standard ops (empty shapes, where nothing is launched): one selective_scan_ref per direction
# ---------------------------------------------------------------------------------------------------------
def directions_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
               z: Optional[Tensor], delta_bias: Optional[Tensor], index: Optional[Tensor]) -> Tensor:
    """The multi-direction scan by definition: per direction, the sequential reference in scan order, scattered
    back to raster order, summed over directions, gated. Differentiable (plain autograd)."""
    from .ref import selective_scan_ref

    G, batch, L, Dg = u.shape
    total = torch.zeros((batch, L, Dg), dtype=torch.float32, device=u.device)
    for g in range(G):
        sl = slice(g * Dg, (g + 1) * Dg)
        y = selective_scan_ref(u[g].transpose(1, 2), delta[g].transpose(1, 2), A[sl], B[g].transpose(1, 2),
                               C[g].transpose(1, 2), None if D is None else D[sl], None,
                               None if delta_bias is None else delta_bias[sl], delta_softplus=True)
        y = y.float().transpose(1, 2)  # (batch, L, Dg), scan order
        if index is not None:
            y = torch.zeros_like(y).index_copy(1, index[g].long(), y)
        total = total + y
    if z is not None:
        total = total * torch.nn.functional.silu(z.float())
    return total.to(u.dtype)
