"""Selective scan in Triton: forward and backward kernels, no compilation step beyond Triton's own JIT.

Semantics are mamba_ssm's `selective_scan_fn` (real A), as in `reference.selective_scan_ref`:
    dt = softplus(delta + delta_bias) (or delta + delta_bias),  h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t,
    y_t = sum_n C_t h_t,  out = (y + D u) * silu(z).
u, delta, z: (batch, D, L), any strides; A: (D, N); D, delta_bias: (D,); B, C: (D, N), (batch, N, L) or grouped
(batch, G, N, L). fp32 / fp16 / bf16 inputs, fp32 compute, out in u's dtype, states in fp32.

Kernel design (see `_triton_kernels`): one program per (batch row, block of BLOCK_D channels); channel blocks are
cut inside segments of gcd(D/G_B, D/G_C) channels so that a block never straddles a group of B or C, hence B_t and
C_t are one (N,) vector per step for the whole block. The (BLOCK_D, N) state stays in registers while the program
loops over time. The forward pass keeps the state before every chunk of `chunk` steps (checkpoints,
(n_chunks, batch, D, N) fp32, O(batch D N L / chunk) memory). The backward pass walks the chunks in reverse,
recomputes each chunk's states from its checkpoint into a per-program scratch buffer (transient:
batch x D x N x (chunk + 1) fp32), then runs the adjoint backwards over the chunk. Reductions are deterministic:
per-program / per-batch-row partials summed here in a fixed order, no atomics.

`triton_scan_fwd` / `triton_scan_bwd` are pure functions (no autograd); `selective_scan_triton` wraps them in a
torch.autograd.Function. On CPU tensors the kernels run under Triton's interpreter (env TRITON_INTERPRET=1, which
must be set before this module first launches a kernel): slow but exact, used by the tests.
"""
from __future__ import annotations

import math
import os
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

DEFAULT_CHUNK = 64
MAX_BLOCK_D = 128  # cap on channels per program (tests lower it to get several blocks on tiny shapes)
TILE_ELEMS = 512  # target BLOCK_D * BLOCK_N per program
NUM_WARPS: Optional[int] = None  # None: from the tile size (tile / 256, 1..8)

_kernels_mod = None


def triton_importable() -> bool:
    """Whether the triton package can be imported here."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:
        return False
    return True


def interpreter_requested() -> bool:
    """Whether env TRITON_INTERPRET asks for Triton's interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def interpreter_enabled() -> bool:
    """Whether Triton's interpreter can run our kernels in this process: TRITON_INTERPRET is set AND was set
    when triton was imported (triton decorates its own library functions, e.g. tl.zeros, at import; imported
    without the variable, they cannot run inside an interpreted kernel). Set the variable before importing
    torch (which may import triton), e.g. in the environment of the process."""
    if not interpreter_requested() or not triton_importable():
        return False
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    return not isinstance(getattr(tl, "zeros", None), JITFunction)


def triton_available(device: Optional[torch.device] = None) -> bool:
    """Whether the Triton scan can run here: triton importable and either CUDA present (for CUDA tensors) or
    Triton's interpreter enabled (TRITON_INTERPRET=1, for CPU tensors). With `device`, for tensors on it."""
    if not triton_importable():
        return False
    if device is None:
        return torch.cuda.is_available() or interpreter_enabled()
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available()
    return device.type == "cpu" and interpreter_enabled()


def _kernels():
    global _kernels_mod
    if _kernels_mod is None:
        from . import _triton_kernels

        _kernels_mod = _triton_kernels
    return _kernels_mod


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def _bc_info(X: Tensor, dim: int):
    """(varies over time, channels per group, strides (batch|d, group, n, l))."""
    if X.dim() == 2:  # (D, N)
        return False, dim, (X.stride(0), 0, X.stride(1), 0)
    if X.dim() == 3:  # (batch, N, L)
        return True, dim, (X.stride(0), 0, X.stride(1), X.stride(2))
    return True, dim // X.shape[1], (X.stride(0), X.stride(1), X.stride(2), X.stride(3))


class _Layout:
    def __init__(self, B: Tensor, C: Tensor, dim: int, N: int):
        self.b_vary, self.dpg_b, self.b_strides = _bc_info(B, dim)
        self.c_vary, self.dpg_c, self.c_strides = _bc_info(C, dim)
        self.dseg = math.gcd(self.dpg_b, self.dpg_c)  # a block never straddles a group of B or C
        self.block_n = _next_pow2(N)
        cap = max(1, min(MAX_BLOCK_D, max(16, TILE_ELEMS // self.block_n)))
        self.block_d = min(_next_pow2(self.dseg), _next_pow2(cap))
        self.nblk = -(-self.dseg // self.block_d)
        self.n_prog = (dim // self.dseg) * self.nblk
        tile = self.block_d * self.block_n
        # about 8 state elements per thread: measured best on an H200 at ARM-B's shape (32 x 16 tile, 2 warps)
        self.num_warps = NUM_WARPS or max(1, min(8, tile // 256))

    def flags(self, D: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool,
              has_idx: bool = False) -> dict:
        """The kernels' compile-time flags and launch options for these inputs (keyword arguments of a launch)."""
        return dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                    SOFTPLUS=bool(softplus), B_VARY=self.b_vary, C_VARY=self.c_vary, BLOCK_D=self.block_d,
                    BLOCK_N=self.block_n, HAS_IDX=has_idx, num_warps=self.num_warps)


def _launch_ctx(t: Tensor):
    if t.is_cuda:
        return torch.cuda.device(t.device)
    import contextlib

    return contextlib.nullcontext()


def _seg_strides(dseg: int, *xs: Tensor):
    """Per-segment strides of (batch, D, L) tensors: segment k starts at channel k * dseg."""
    return [dseg * x.stride(1) for x in xs]


def _vec(t: Optional[Tensor], like: Tensor) -> Tensor:
    return like if t is None else t.contiguous()


def _inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor], zz: Tensor,
            delta_bias: Optional[Tensor]) -> list:
    """The kernels' first eight arguments: the inputs, with stand-ins (never read) for absent D and delta_bias;
    zz is z or its stand-in."""
    return [u, delta, A, B, C, _vec(D, u), zz, _vec(delta_bias, u)]


def triton_scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                    z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool,
                    chunk: int = DEFAULT_CHUNK) -> Tuple[Tensor, Tensor, Tensor]:
    """out (batch, D, L) in u's dtype, last_state (batch, D, N) fp32, checkpoints (n_chunks, batch, D, N) fp32
    (the state before each chunk of `chunk` steps; checkpoints[0] is zero)."""
    k = _kernels()
    batch, dim, L = u.shape
    N = A.shape[1]
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"triton_scan_fwd: chunk must be >= 1, got {chunk}")
    n_chunks = -(-L // chunk)
    dev = u.device
    out = torch.empty((batch, dim, L), dtype=u.dtype, device=dev)
    last = torch.zeros((batch, dim, N), dtype=torch.float32, device=dev)
    ckpt = torch.zeros((n_chunks, batch, dim, N), dtype=torch.float32, device=dev)
    if out.numel() == 0 or N == 0:  # nothing to launch (empty batch / channels / state)
        return _epilogue_empty(out, u, D, z), last, ckpt
    lay = _Layout(B, C, dim, N)
    zz = u if z is None else z
    with _launch_ctx(u):
        k._scan_fwd_kernel[(batch, lay.n_prog)](
            *_inputs(u, delta, A, B, C, D, zz, delta_bias),
            out, last, ckpt, u,
            *u.stride(), *delta.stride(), *zz.stride(), *out.stride(),
            *_seg_strides(lay.dseg, u, delta, zz, out), 0,
            *A.stride(), *lay.b_strides, *lay.c_strides,
            L, N, lay.dseg, lay.nblk, lay.dpg_b, lay.dpg_c, n_chunks, batch, dim, chunk,
            **lay.flags(D, z, delta_bias, softplus),
        )
    return out, last, ckpt


def _epilogue_empty(out: Tensor, u: Tensor, D: Optional[Tensor], z: Optional[Tensor]) -> Tensor:
    """out when the scan itself is empty (N == 0: y = 0) or out has no elements."""
    y = torch.zeros(out.shape, dtype=torch.float32, device=out.device)
    if D is not None:
        y = y + u.float() * D.float()[:, None]
    if z is not None:
        y = y * torch.nn.functional.silu(z.float())
    return y.to(out.dtype)


def _reduce_bc(part: Tensor, X: Tensor, lay_vary: bool, batch: int) -> Tensor:
    if not lay_vary:  # (batch, D, N) -> (D, N)
        return part.sum(0).to(X.dtype)
    if X.dim() == 3:  # (batch, n_prog, N, L) -> (batch, N, L)
        return part.sum(1).to(X.dtype)
    G = X.shape[1]  # programs are ordered group-major
    return part.view(batch, G, -1, *part.shape[2:]).sum(2).to(X.dtype)


def triton_scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                    z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool, checkpoints: Tensor,
                    dout: Tensor, dlast: Optional[Tensor], chunk: int = DEFAULT_CHUNK):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias), each in the dtype and shape (for B and C: the
    form) of its input; None for absent optional inputs. `checkpoints` from triton_scan_fwd with the same chunk;
    dout: gradient of out; dlast: gradient of last_state, or None."""
    k = _kernels()
    batch, dim, L = u.shape
    N = A.shape[1]
    chunk = int(chunk)
    n_chunks = -(-L // chunk)
    if tuple(checkpoints.shape) != (n_chunks, batch, dim, N):
        raise ValueError(f"triton_scan_bwd: checkpoints have shape {tuple(checkpoints.shape)}, expected "
                         f"{(n_chunks, batch, dim, N)} for chunk={chunk}")
    if batch * dim * L == 0 or N == 0:  # nothing to launch: the gradients of an empty scan, by autograd
        return _empty_grads(u, delta, A, B, C, D, z, delta_bias, softplus, dout)
    lay = _Layout(B, C, dim, N)
    dev = u.device
    f32 = dict(dtype=torch.float32, device=dev)
    ckpt = checkpoints.contiguous()
    du = torch.empty((batch, dim, L), dtype=u.dtype, device=dev)
    ddelta = torch.empty((batch, dim, L), dtype=delta.dtype, device=dev)
    dz = None if z is None else torch.empty((batch, dim, L), dtype=z.dtype, device=dev)
    dA_p = torch.empty((batch, dim, N), **f32)
    dB_p = torch.empty((batch, lay.n_prog, N, L) if lay.b_vary else (batch, dim, N), **f32)
    dC_p = torch.empty((batch, lay.n_prog, N, L) if lay.c_vary else (batch, dim, N), **f32)
    dD_p = None if D is None else torch.empty((batch, dim), **f32)
    db_p = None if delta_bias is None else torch.empty((batch, dim), **f32)
    steps = min(chunk, L)
    scratch = torch.empty(batch * lay.n_prog * (steps + 1) * lay.block_d * lay.block_n, **f32)
    glast = None if dlast is None else dlast.to(torch.float32).contiguous()
    zz = u if z is None else z
    with _launch_ctx(u):
        k._scan_bwd_kernel[(batch, lay.n_prog)](
            *_inputs(u, delta, A, B, C, D, zz, delta_bias),
            ckpt, dout, ckpt if glast is None else glast, scratch,
            du, ddelta, du if dz is None else dz, dA_p, dB_p, dC_p,
            dA_p if dD_p is None else dD_p, dA_p if db_p is None else db_p, u,
            *u.stride(), *delta.stride(), *zz.stride(), *dout.stride(),
            *_seg_strides(lay.dseg, u, delta, zz, dout), 0,
            dim * L, lay.dseg * L, L, 1,  # du, ddelta, dz: contiguous (batch, D, L)
            *A.stride(), *lay.b_strides, *lay.c_strides,
            L, N, lay.dseg, lay.nblk, lay.dpg_b, lay.dpg_c, n_chunks, batch, dim, steps,
            **lay.flags(D, z, delta_bias, softplus), HAS_GLAST=glast is not None,
        )
    dA = dA_p.sum(0).to(A.dtype)
    dB = _reduce_bc(dB_p, B, lay.b_vary, batch)
    dC = _reduce_bc(dC_p, C, lay.c_vary, batch)
    dD = None if D is None else dD_p.sum(0).to(D.dtype)
    ddb = None if delta_bias is None else db_p.sum(0).to(delta_bias.dtype)
    return du, ddelta, dA, dB, dC, dD, dz, ddb


def autograd_grads(f: Callable[..., Tensor], inputs: Sequence[Optional[Tensor]],
                   dout: Tensor) -> List[Optional[Tensor]]:
    """Gradients of f(*inputs) (a differentiable reference) for dout, by autograd: None for absent inputs, zeros
    for inputs the output does not depend on. The kernels' answer where there is nothing to launch."""
    with torch.enable_grad():
        xs = [None if t is None else t.detach().requires_grad_() for t in inputs]
        out = f(*xs)
        live = [x for x in xs if x is not None]
        gs = iter(torch.autograd.grad(out, live, dout.to(out.dtype), allow_unused=True))
    grads = [None if x is None else next(gs) for x in xs]
    return [g if g is not None or x is None else torch.zeros_like(x) for g, x in zip(grads, xs)]


def _empty_grads(u, delta, A, B, C, D, z, delta_bias, softplus, dout):
    from .ref import selective_scan_ref

    grads = autograd_grads(lambda *xs: selective_scan_ref(*xs, delta_softplus=softplus),
                           (u, delta, A, B, C, D, z, delta_bias), dout)
    du, ddelta, dA, dB, dC, dD, dz, ddb = grads
    return du, ddelta, dA, dB, dC, dD, dz, ddb


class SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk):
        out, last, ckpt = triton_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        ctx.softplus, ctx.chunk = bool(delta_softplus), chunk
        return (out, last) if return_last_state else out

    @staticmethod
    def backward(ctx, dout, dlast=None):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(u)
        grads = triton_scan_bwd(u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ckpt, dout, dlast, ctx.chunk)
        du, ddelta, dA, dB, dC, dD, dz, ddb = grads
        return du, ddelta, dA, dB, dC, dD, dz, ddb, None, None, None


def selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                          z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                          delta_softplus: bool = False, return_last_state: bool = False,
                          chunk: int = DEFAULT_CHUNK):
    """Selective scan (mamba_ssm's `selective_scan_fn` signature) on the Triton kernels, differentiable.
    Returns out (batch, D, L) in u's dtype, and last_state (batch, D, N) fp32 if return_last_state."""
    return SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk)
