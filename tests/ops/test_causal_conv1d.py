"""Depthwise causal conv1d: fast path vs reference vs a by-hand loop over time steps."""
import pytest
import torch
import torch.nn.functional as F

from armvision.ops import causal_conv1d_fn, causal_conv1d_ref, causal_conv1d_torch


def by_hand(x, weight, bias, activation):
    """out[b, d, t] = bias[d] + sum_k weight[d, k] * x[b, d, t - width + 1 + k], one step at a time."""
    batch, dim, L = x.shape
    width = weight.shape[1]
    out = torch.zeros(batch, dim, L, dtype=torch.float64)
    for t in range(L):
        for k in range(width):
            s = t - width + 1 + k
            if s >= 0:
                out[:, :, t] += weight[:, k].double() * x[:, :, s].double()
        if bias is not None:
            out[:, :, t] += bias.double()
    return F.silu(out) if activation else out


@pytest.mark.parametrize("L", [1, 3, 11])
@pytest.mark.parametrize("width", [1, 4])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_fast_and_reference_match_by_hand(L, width, with_bias, activation):
    torch.manual_seed(0)
    x = torch.randn(2, 3, L, requires_grad=True)
    w = torch.randn(3, width, requires_grad=True)
    b = torch.randn(3, requires_grad=True) if with_bias else None
    want = by_hand(x.detach(), w.detach(), None if b is None else b.detach(), activation)
    fast = causal_conv1d_torch(x, w, b, activation)
    ref = causal_conv1d_ref(x, w, b, activation)
    assert fast.shape == (2, 3, L)
    torch.testing.assert_close(fast.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref.double(), want, rtol=1e-5, atol=1e-5)
    gout = torch.randn_like(fast)
    params = [t for t in (x, w, b) if t is not None]
    g_fast = torch.autograd.grad(fast, params, gout)
    g_ref = torch.autograd.grad(ref, params, gout)
    for a, r in zip(g_fast, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def test_causality_future_does_not_leak():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 10)
    w = torch.randn(2, 4)
    y1 = causal_conv1d_fn(x, w, None, "silu")
    x2 = x.clone()
    x2[..., 6:] = 100.0
    y2 = causal_conv1d_fn(x2, w, None, "silu")
    torch.testing.assert_close(y1[..., :6], y2[..., :6])
    assert not torch.allclose(y1[..., 6:], y2[..., 6:])


def test_dtype_is_kept():
    x = torch.randn(2, 3, 5, dtype=torch.bfloat16)
    w = torch.randn(3, 4)
    assert causal_conv1d_fn(x, w, torch.zeros(3)).dtype == torch.bfloat16
    x64 = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    w64 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: causal_conv1d_fn(a, b, None, "silu"), (x64, w64))
