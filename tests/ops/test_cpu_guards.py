"""What the fused CPU room refuses or promotes instead of reading or writing out of bounds: orders that are not
permutations, empty sequences, tensors on another device, a zero output scale, dtypes that disagree; and the gate's
bias gradient for one-dimensional inputs."""
import pytest
import torch

from armvision.ops import causal_conv1d_directions, cpu_kernel, selective_scan_directions, silu_mul

needs_kernel = pytest.mark.skipif(cpu_kernel.load() is None, reason="the fused CPU kernel is not built here")


def _directions(G=2, batch=1, L=9, Dg=8, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, delta = torch.randn(G, batch, L, Dg, generator=g), 0.5 * torch.randn(G, batch, L, Dg, generator=g)
    A = -torch.exp(torch.randn(G * Dg, N, generator=g))
    B, C = torch.randn(G, batch, L, N, generator=g), torch.randn(G, batch, L, N, generator=g)
    D, bias = torch.randn(G * Dg, generator=g), torch.randn(G * Dg, generator=g)
    z = torch.randn(batch, L, Dg, generator=g)
    index = torch.stack([torch.arange(L), torch.arange(L).flip(0)])[:G]
    return [u, delta, A, B, C, D, z, bias, index]


@needs_kernel
@pytest.mark.parametrize("bad", ["out of range", "repeated", "negative"])
def test_an_order_that_is_not_a_permutation_is_refused(bad):
    args = _directions()
    L = args[0].shape[2]
    index = args[-1].clone()
    index[1, 0] = {"out of range": L, "repeated": index[1, 1].item(), "negative": -1}[bad]
    args[-1] = index
    with pytest.raises(ValueError, match=r"_directions: each row of index must be a permutation of 0\.\.8"):
        selective_scan_directions(*args, backend="cpu")
    x = torch.randn(1, L, 8)
    with pytest.raises(ValueError, match="causal_conv1d_directions: each row of index must be a permutation"):
        causal_conv1d_directions(x, torch.randn(16, 4), torch.randn(16), index, backend="cpu")


def test_empty_sequences_are_refused():
    args = _directions(L=1)
    args[0] = args[0][:, :, :0]
    with pytest.raises(ValueError, match=r"empty sequence \(L=0\)"):
        selective_scan_directions(*args, backend="cpu")
    with pytest.raises(ValueError, match=r"empty sequence \(L=0\)"):
        causal_conv1d_directions(torch.randn(1, 0, 8), torch.randn(16, 4), torch.randn(16), backend="cpu")


def test_tensors_on_another_device_are_refused():
    args = _directions()
    args[6] = args[6].to("meta")  # z
    with pytest.raises(ValueError, match="selective_scan_directions: z is on meta but the inputs are on cpu"):
        selective_scan_directions(*args, backend="cpu")
    with pytest.raises(ValueError, match="silu_mul: b is on meta but the inputs are on cpu"):
        silu_mul(torch.randn(2, 3), torch.randn(2, 3, device="meta"))
    with pytest.raises(ValueError, match="causal_conv1d_directions: bias is on meta"):
        causal_conv1d_directions(torch.randn(1, 5, 8), torch.randn(16, 4), torch.randn(16, device="meta"))


@pytest.mark.parametrize("scale", [0.0, float("nan"), float("inf")])
def test_a_scale_that_is_zero_or_not_finite_is_refused(scale):
    with pytest.raises(ValueError, match="scale must be a finite nonzero number"):
        selective_scan_directions(*_directions(), scale=scale, backend="cpu")


@needs_kernel
def test_mixed_dtypes_are_promoted_not_rounded_down():
    args = _directions()
    args[0] = args[0].bfloat16()  # u in bf16, delta and z in fp32
    got = selective_scan_directions(*args, backend="cpu")
    want = selective_scan_directions(*([args[0].float()] + args[1:]), backend="cpu").bfloat16()
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_gate_bias_gradients_of_one_dimensional_inputs_keep_their_shape(backend):
    a, b = torch.randn(7, requires_grad=True), torch.randn(7, requires_grad=True)
    ba, bb = torch.randn(7, requires_grad=True), torch.randn(7, requires_grad=True)
    silu_mul(a, b, ba, bb, backend=backend).sum().backward()
    assert ba.grad.shape == (7,) and bb.grad.shape == (7,)
    torch.testing.assert_close(ba.grad, a.grad)  # d/d(ba) = d/d(a) elementwise when nothing is summed over
