"""The scans and the mixer's conv as torch.library custom ops, so that autograd, torch.compile and torch.export see
one op whichever backend room (backends/) computes it. `backend` is a concrete room name chosen by ops.resolve.

`armvision::selective_scan_fwd(u, delta, A, B, C, D?, z?, delta_bias?, softplus, backend)` -> (out, last_state,
saved) and `armvision::selective_scan_bwd(..., saved, dout, dlast?)` -> the eight input gradients. Rooms that keep
state ("cpu", "triton") save what their backward needs; the others ("torch", "ref", "cuda") save nothing and their
backward recomputes the forward under autograd: in eager at autograd level (so it can itself be differentiated),
under torch.compile / export inside selective_scan_bwd (the chunked path plans its chunks from the data, which a
traced graph cannot do).

`armvision::selective_scan_directions_fwd(u, delta, A, B, C, D, z, delta_bias, index?, backend)` -> (out, saved):
the Mamba mixer's G directions over one sequence in one call ("cpu", "triton"); `..._bwd` its gradients.
`armvision::causal_conv1d_directions_fwd(x, weight, bias, index?)`: the mixer's conv + SiLU in every direction's
order (the "cpu" room). Fake (meta) implementations give shapes and layouts from input shapes only (the rooms'
*_meta functions), so tracing never looks at data.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .backends._common import no_grad as _no_grad, state_dtype as _state_dtype
from .backends import room




def _recompute_grads(u, delta, A, B, C, D, z, delta_bias, softplus, backend, dout, dlast) -> List[Tensor]:
    """The gradients of a stateless room's scan, by autograd over a recomputation."""
    inputs = [u, delta, A, B, C, D, z, delta_bias]
    leaves = [None if t is None else t.detach().requires_grad_(True) for t in inputs]
    with torch.enable_grad():
        out, last = room(backend).scan(*leaves, softplus, True)
        outs, grads = [out], [dout]
        if dlast is not None:
            outs.append(last)
            grads.append(dlast.to(last.dtype))
        wrt = [t for t in leaves if t is not None]
        got = iter(torch.autograd.grad(outs, wrt, grads, allow_unused=True))
    res = []
    for t in leaves:
        g = None if t is None else next(got)
        res.append(_no_grad(u) if t is None else (torch.zeros_like(t) if g is None else g))
    return res


# ---------------------------------------------------------------------------------------------------------
# The single scan
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("armvision::selective_scan_fwd", mutates_args=())
def selective_scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                       z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool,
                       backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    r = room(backend)
    if r.KEEPS_STATE:
        return r.scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus)
    with torch.no_grad():
        out, last = r.scan(u, delta, A, B, C, D, z, delta_bias, softplus, True)
    return out.contiguous(), last.to(_state_dtype(u)), u.new_empty(0)


@selective_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, softplus, backend):
    r = room(backend)
    if r.KEEPS_STATE:
        return r.scan_meta(u, A, B, C)
    batch, dim, L = u.shape
    return u.new_empty(batch, dim, L), u.new_empty(batch, dim, A.shape[1], dtype=_state_dtype(u)), u.new_empty(0)


@torch.library.custom_op("armvision::selective_scan_bwd", mutates_args=())
def selective_scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                       z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool, backend: str,
                       saved: Tensor, dout: Tensor, dlast: Optional[Tensor]) -> List[Tensor]:
    r = room(backend)
    if r.KEEPS_STATE:
        return r.scan_bwd(u, delta, A, B, C, D, z, delta_bias, softplus, saved, dout, dlast)
    # stateless rooms recompute here, where a compiler sees one op, and hand back contiguous gradients
    grads = _recompute_grads(u, delta, A, B, C, D, z, delta_bias, softplus, backend, dout, dlast)
    return [g.contiguous() for g in grads]


@selective_scan_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, softplus, backend, saved, dout, dlast):
    # exactly the real layouts (inductor plans buffers from them): the room's for (batch, D, L) gradients
    r = room(backend)
    seq = r.seq_grad_meta if r.KEEPS_STATE else (lambda t: t.new_empty(t.shape))

    def plain(t):
        return t.new_empty(t.shape)

    return [seq(u), seq(delta), plain(A), plain(B), plain(C), _no_grad(u) if D is None else plain(D),
            _no_grad(u) if z is None else seq(z), _no_grad(u) if delta_bias is None else plain(delta_bias)]


def _setup(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, softplus, backend = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, output[2])
    ctx.softplus, ctx.backend = softplus, backend


def _backward(ctx, dout, dlast, _dsaved):
    u, delta, A, B, C, D, z, delta_bias, saved = ctx.saved_tensors
    if room(ctx.backend).KEEPS_STATE or torch.compiler.is_compiling():
        grads = selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ctx.backend, saved, dout,
                                   dlast)
    else:  # eager: at autograd level (not inside an op), where the recomputation can itself be differentiated
        grads = _recompute_grads(u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ctx.backend, dout, dlast)
    present = [u, delta, A, B, C, D, z, delta_bias]
    return (*[None if t is None else g for t, g in zip(present, grads)], None, None)


torch.library.register_autograd("armvision::selective_scan_fwd", _backward, setup_context=_setup)


# ---------------------------------------------------------------------------------------------------------
# The multi-direction scan: u, delta (G, batch, L, Dg) in each direction's scan order, B, C (G, batch, L, N),
# A (G * Dg, N), D, delta_bias (G * Dg,), z (batch, L, Dg) raster order, index (G, L) int32 or None
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("armvision::selective_scan_directions_fwd", mutates_args=())
def selective_scan_directions_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                                  delta_bias: Tensor, index: Optional[Tensor], scale: float, save: bool,
                                  backend: str, dt_weight: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """out (batch, L, Dg) = scale * silu(z) * sum_g scan_g (softplus dt), and what backward needs (nothing where
    save is False: inference). dt_weight (rooms with DT_PROJECTION): delta is the dt projection's input."""
    return room(backend).directions_fwd(u, delta, A, B, C, D, z, delta_bias, index, scale, save, **_dt(dt_weight))


def _dt(dt_weight: Optional[Tensor]) -> dict:
    """The dt projection's weight as a keyword, for the rooms that take it (only ever given to those)."""
    return {} if dt_weight is None else {"dt_weight": dt_weight}


@selective_scan_directions_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, index, scale, save, backend, dt_weight=None):
    return room(backend).directions_meta(u, A, save)


@torch.library.custom_op("armvision::selective_scan_directions_bwd", mutates_args=())
def selective_scan_directions_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                                  delta_bias: Tensor, index: Optional[Tensor], scale: float, backend: str,
                                  saved: Tensor, dout: Tensor, dt_weight: Optional[Tensor] = None) -> List[Tensor]:
    """The eight gradients; with dt_weight the second is that of the delta made inside, (G, batch, L, Dg)."""
    return room(backend).directions_bwd(u, delta, A, B, C, D, z, delta_bias, index, scale, saved, dout,
                                        **_dt(dt_weight))


@selective_scan_directions_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, index, scale, backend, saved, dout, dt_weight=None):
    return room(backend).directions_grad_meta(u, delta, A, B, C, D, z, delta_bias)


def _setup_directions(ctx, inputs, output):
    *tensors, scale, save, backend, dt_weight = inputs
    ctx.save_for_backward(*tensors, dt_weight, output[1])
    ctx.scale, ctx.backend = scale, backend


def projection_grads(x: Tensor, weight: Tensor, ddelta: Tensor, want_x: bool = True,
                     want_weight: bool = True) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of delta = x weight^T (per direction g: x (G, batch, L, R), weight (G, Dg, R)) from ddelta
    (G, batch, L, Dg): dx = ddelta weight, dweight = ddelta^T x (over batch and steps), each as one batched product
    over the directions, in ddelta's dtype; returned in x's and weight's dtypes. Only the wanted ones are made (None
    for the others: a frozen dt_proj costs no product)."""
    G, batch, L, _ = ddelta.shape
    d2 = ddelta.reshape(G, batch * L, -1)
    dx = torch.matmul(d2, weight.to(d2.dtype)).view(G, batch, L, -1).to(x.dtype) if want_x else None
    dw = (torch.matmul(x.reshape(G, batch * L, -1).to(d2.dtype).transpose(1, 2), d2).transpose(1, 2)  # (G, Dg, R)
          .to(weight.dtype) if want_weight else None)
    return dx, dw


def _backward_directions(ctx, dout, _dsaved):
    *tensors, index, dt_weight, saved = ctx.saved_tensors
    if saved.numel() == 0:
        raise RuntimeError("selective_scan_directions: backward through a call made with save=False (the states it "
                           "restarts from were not kept)")
    grads = list(selective_scan_directions_bwd(*tensors, index, ctx.scale, ctx.backend, saved, dout, dt_weight))
    dw = None
    if dt_weight is not None:  # delta was made inside from x = tensors[1]: its gradient goes on to x and the weight
        grads[1], dw = projection_grads(tensors[1], dt_weight, grads[1], ctx.needs_input_grad[1],
                                        ctx.needs_input_grad[12])
    return (*grads, None, None, None, None, dw)  # no gradient for index, scale, save and backend


torch.library.register_autograd("armvision::selective_scan_directions_fwd", _backward_directions,
                                setup_context=_setup_directions)


# ---------------------------------------------------------------------------------------------------------
# The mixer's depthwise causal conv + SiLU in every direction's order, channels-last ("cpu" room)
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("armvision::causal_conv1d_directions_fwd", mutates_args=())
def causal_conv1d_directions_fwd(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor]) -> Tensor:
    return room("cpu").conv_directions_fwd(x, weight, bias, index)


@causal_conv1d_directions_fwd.register_fake
def _(x, weight, bias, index):
    return x.new_empty(weight.shape[0] // x.shape[2], *x.shape)


@torch.library.custom_op("armvision::causal_conv1d_directions_bwd", mutates_args=())
def causal_conv1d_directions_bwd(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor],
                                 du: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    return room("cpu").conv_directions_bwd(x, weight, bias, index, du)


@causal_conv1d_directions_bwd.register_fake
def _(x, weight, bias, index, du):
    return x.new_empty(x.shape), torch.empty_like(weight), torch.empty_like(bias)


def _setup_conv(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward_conv(ctx, du):
    x, weight, bias, index = ctx.saved_tensors
    return (*causal_conv1d_directions_bwd(x, weight, bias, index, du), None)


torch.library.register_autograd("armvision::causal_conv1d_directions_fwd", _backward_conv,
                                setup_context=_setup_conv)


# ---------------------------------------------------------------------------------------------------------
# The SwiGLU gate silu(a + ba) * (b + bb) ("cpu" room): one pass each way; biases over the last dimension, optional
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("armvision::silu_mul", mutates_args=())
def silu_mul(a: Tensor, b: Tensor, ba: Optional[Tensor], bb: Optional[Tensor]) -> Tensor:
    return room("cpu").silu_mul_fwd(a, b, ba, bb)


@silu_mul.register_fake
def _(a, b, ba, bb):
    return a.new_empty(a.shape)  # contiguous, as the kernel writes it


@torch.library.custom_op("armvision::silu_mul_bwd", mutates_args=())
def silu_mul_bwd(a: Tensor, b: Tensor, ba: Optional[Tensor], bb: Optional[Tensor],
                 dout: Tensor) -> Tuple[Tensor, Tensor]:
    return room("cpu").silu_mul_bwd(a, b, ba, bb, dout)


@silu_mul_bwd.register_fake
def _(a, b, ba, bb, dout):
    return a.new_empty(a.shape), b.new_empty(b.shape)


def _setup_gate(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward_gate(ctx, dout):
    a, b, ba, bb = ctx.saved_tensors
    da, db = silu_mul_bwd(a, b, ba, bb, dout)
    # a bias's gradient: the sum over every dimension but the last (rows of the last dimension)
    dba = None if ba is None else da.reshape(-1, da.shape[-1]).sum(0).to(ba.dtype)
    dbb = None if bb is None else db.reshape(-1, db.shape[-1]).sum(0).to(bb.dtype)
    return da, db, dba, dbb


torch.library.register_autograd("armvision::silu_mul", _backward_gate, setup_context=_setup_gate)
