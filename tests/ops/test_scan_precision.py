"""Issue 25 (7): the selective scan's precision, tight. Every CPU backend in float32 against a float64 loop written
here (independent of the library's own reference), at ~1e-6 of the output's scale: docs/performance.md claims
~2e-7, and mamba_ssm's loose float32 tolerances (6e-4) would let a D term off by 1e-4 pass. The D term alone (C = 0,
no state contribution) is checked per element, and so is its gradient."""
import pytest
import torch
import torch.nn.functional as F

from armvision.ops import available_backends, selective_scan_fn

CPU_BACKENDS = [b for b in ("ref", "torch", "cpu") if b in available_backends("selective_scan")]
TIGHT = 2e-6  # relative to the largest output; measured: 1e-7 (ref, cpu) to 3e-7 (torch); D off by 1e-4: 2.5e-5


def scan64(u, delta, A, B, C, D, z, bias):
    """y = (sum_n C_n x_n + D u) * silu(z), x_t = exp(dt_t A) x_{t-1} + dt_t B_t u_t, dt = softplus(delta + bias):
    Mamba's recurrence, step by step in float64."""
    u, delta, A, B, C, D, z, bias = (t.double() for t in (u, delta, A, B, C, D, z, bias))
    dt = F.softplus(delta + bias[:, None])  # (batch, D, L)
    x = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(u.shape[-1]):
        x = torch.exp(dt[..., t, None] * A) * x + dt[..., t, None] * B[:, None, :, t] * u[..., t, None]
        ys.append((x * C[:, None, :, t]).sum(-1))
    return (torch.stack(ys, -1) + D[:, None] * u) * F.silu(z)


def inputs(batch=2, dim=24, L=64, N=8, seed=0, zero_c=False):
    g = torch.Generator().manual_seed(seed)
    C = torch.zeros(batch, N, L) if zero_c else torch.randn(batch, N, L, generator=g)
    return dict(u=torch.randn(batch, dim, L, generator=g), delta=torch.rand(batch, dim, L, generator=g) * 0.5,
                A=-0.5 - torch.rand(dim, N, generator=g), B=torch.randn(batch, N, L, generator=g), C=C,
                D=torch.randn(dim, generator=g), z=torch.randn(batch, dim, L, generator=g),
                bias=torch.rand(dim, generator=g) * 0.5)


def run(x, backend):
    return selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["bias"],
                             delta_softplus=True, backend=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_float32_scan_is_within_2e_6_of_float64(backend, seed):
    x = inputs(seed=seed)
    want = scan64(**x)
    err = (run(x, backend).double() - want).abs().max() / want.abs().max()
    assert err < TIGHT, f"{backend}: {err:.2e}"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_the_d_term_alone_is_exact_per_element(backend):
    x = inputs(zero_c=True)  # no state contribution: y = D u silu(z)
    want = scan64(**x)
    got = run(x, backend).double()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7 * float(want.abs().max()))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_the_d_gradient_is_within_1e_6(backend):
    x = inputs(L=32)
    x["D"].requires_grad_()
    grad_out = torch.randn(x["u"].shape, generator=torch.Generator().manual_seed(5))
    (gD,) = torch.autograd.grad((run(x, backend) * grad_out).sum(), [x["D"]])
    D64 = x["D"].detach().double().requires_grad_()
    (want,) = torch.autograd.grad((scan64(**{**x, "D": D64}) * grad_out.double()).sum(), [D64])
    err = (gD.double() - want).abs().max() / want.abs().max()
    assert err < TIGHT, f"{backend}: {err:.2e}"
