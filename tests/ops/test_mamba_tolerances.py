"""mamba_ssm's own test of its selective scan (tests/ops/test_selective_scan.py), cell by cell, on the fused CPU
kernel: its input distributions (batch 2, 4 channels, 8 states, A = -0.5 rand, delta and delta_bias 0.5 rand), its
lengths 372 and 1134, fp32 / fp16 / bf16 inputs with float32 weights, every B / C form, and its exact tolerances:
outputs and state (rtol, atol) by dtype, du 2x, ddelta 5x / 10x, weights (A, D, delta_bias, a constant B or C, z)
rtolw = max(1e-3, rtol), atolw = max(1e-3, atol) (z present), dA atolw 5x, a variable B or C (rtol, atol)."""
import itertools

import pytest
import torch

from armvision.ops import cpu_kernel, selective_scan_fn
from armvision.ops.backends.ref import selective_scan_ref

pytestmark = pytest.mark.skipif(cpu_kernel.load() is None, reason="needs a C compiler")

FORMS = {"var": (True, True, 1), "var-groups2": (True, True, 2), "constB": (False, True, 1),
         "constC": (True, False, 1), "constBC": (False, False, 1)}


def _inputs(itype, L, var_b, var_c, groups, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch, dim, N = 2, 4, 8

    def bc(var):
        if not var:
            return torch.randn(dim, N, generator=g).requires_grad_()
        shape = (batch, N, L) if groups == 1 else (batch, groups, N, L)
        return torch.randn(*shape, generator=g).to(itype).requires_grad_()

    A = (-0.5 * torch.rand(dim, N, generator=g)).requires_grad_()
    B, C = bc(var_b), bc(var_c)
    D = torch.randn(dim, generator=g).requires_grad_()
    z = torch.randn(batch, dim, L, generator=g).to(itype).requires_grad_()
    bias = (0.5 * torch.rand(dim, generator=g)).requires_grad_()
    u = torch.randn(batch, dim, L, generator=g).to(itype).requires_grad_()
    delta = (0.5 * torch.rand(batch, dim, L, generator=g)).to(itype).requires_grad_()
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=bias)


DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# every form at 372; at 1134 (slower through the sequential reference) the shared and the all-constant forms
CELLS = [*itertools.product(DTYPES, [372], FORMS), *itertools.product(DTYPES, [1134], ["var", "constBC"])]


@pytest.mark.parametrize("itype,L,form", CELLS, ids=lambda v: str(v).replace("torch.", ""))
def test_mamba_ssm_tolerance_matrix(itype, L, form):
    var_b, var_c, groups = FORMS[form]
    rtol, atol = {torch.float32: (6e-4, 2e-3), torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}[itype]
    rtolw, atolw = max(1e-3, rtol), max(1e-3, atol)
    x = _inputs(itype, L, var_b, var_c, groups)
    xr = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
    out, state = selective_scan_fn(**x, delta_softplus=True, return_last_state=True, backend="cpu")
    out_r, state_r = selective_scan_ref(**xr, delta_softplus=True, return_last_state=True)
    gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.dtype)
    out.backward(gout)
    out_r.backward(gout)
    cells = [("out", out, out_r, rtol, atol), ("state", state, state_r, rtol, atol),
             ("du", x["u"].grad, xr["u"].grad, 2 * rtol, 2 * atol),
             ("ddelta", x["delta"].grad, xr["delta"].grad, 5 * rtol, 10 * atol),
             ("dA", x["A"].grad, xr["A"].grad, rtolw, 5 * atolw),
             ("dB", x["B"].grad, xr["B"].grad, *((rtol, atol) if var_b else (rtolw, atolw))),
             ("dC", x["C"].grad, xr["C"].grad, *((rtol, atol) if var_c else (rtolw, atolw))),
             ("dD", x["D"].grad, xr["D"].grad, rtolw, atolw), ("dz", x["z"].grad, xr["z"].grad, rtolw, atolw),
             ("ddelta_bias", x["delta_bias"].grad, xr["delta_bias"].grad, rtolw, atolw)]
    for name, got, want, r, a in cells:
        assert got.dtype == want.dtype, name
        assert torch.allclose(got.float(), want.float(), rtol=r, atol=a), \
            f"{name}: max excess {((got.float() - want.float()).abs() - a - r * want.float().abs()).max():.2e}"
