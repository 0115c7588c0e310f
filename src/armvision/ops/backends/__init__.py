"""The selective-scan backends, one module ("room") each: ref, torch, cpu, triton, cuda.

Every room offers the same functions, or sets a name to None where it has no implementation of its own (then
`armvision.ops.api` falls back, in one documented place):

    KEEPS_STATE           True: `scan_fwd` / `scan_bwd` keep state for backward; False: `scan` is differentiable
                          and the custom op's backward recomputes it
    scan                  (u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state) -> out[, last], every
                          B/C form of mamba_ssm (stateless rooms)
    scan_fwd, scan_bwd    forward (out, last, saved) and the eight gradients (rooms that keep state), and
    scan_meta, seq_grad_meta   the fake tensors of the custom op armvision::selective_scan_fwd/bwd
    directions_fwd, directions_bwd, directions_meta, directions_grad_meta
                          the Mamba mixer's G directions over one sequence in one call (custom ops
                          armvision::selective_scan_directions_fwd/bwd); None: one single scan per direction
    DT_PROJECTION         True: directions_fwd / _bwd also take `dt_weight` and make the mixer's dt projection
                          inside (delta = x dt_weight^T, for the mixer's form: N = 16); False: the API makes delta
                          first
    conv                  depthwise causal conv1d (x, weight, bias, activation) on (batch, D, L); None: "torch"'s
    conv_directions_fwd, conv_directions_bwd
                          conv + SiLU of x (batch, L, Dg) in each direction's order in one call (custom ops
                          armvision::causal_conv1d_directions_fwd/bwd); None: one conv per direction
    silu_mul_fwd, silu_mul_bwd
                          the SwiGLU gate silu(a) * b in one pass each way (custom op armvision::silu_mul);
                          None: torch ops

Rooms import nothing from armvision.ops outside backends/ (and the C-kernel glue cpu_kernel.py / scan_cpu.py), so
the API, the custom ops and the resolver sit above them without circles. Importing a room is cheap: the Triton and
CUDA rooms import their packages (triton, mamba_ssm, causal_conv1d) on first use, the CPU room builds its kernel on
first use.
"""
from __future__ import annotations

from types import ModuleType

from . import cpu, cuda, ref, torch, triton

ROOMS = {"ref": ref, "torch": torch, "cpu": cpu, "triton": triton, "cuda": cuda}
NAMES = tuple(ROOMS)


def room(name: str) -> ModuleType:
    """The module of backend `name` (one of NAMES). A plain lookup, so torch.compile traces through it."""
    if name not in ROOMS:
        raise ValueError(f"unknown scan backend {name!r}; the rooms are {', '.join(NAMES)}")
    return ROOMS[name]
