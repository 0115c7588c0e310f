"""armvision.ops.silu_mul (SwiGLU's gate silu(a + ba) * (b + bb)): the fused CPU kernel's one pass each way against
the plain formula in float64, forward and every gradient, float32 and bfloat16, with and without the biases, rows
whose width is not a multiple of the vector width (the kernel's tail), and the mistakes it refuses."""
import pytest
import torch

from armvision.ops import cpu_kernel, silu_mul

needs_kernel = pytest.mark.skipif(cpu_kernel.load() is None, reason="the fused CPU kernel is not built here")


def plain(a, b, ba, bb):
    a = a if ba is None else a + ba
    b = b if bb is None else b + bb
    return torch.nn.functional.silu(a) * b


def leaves(shape, dtype, biases, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = (torch.randn(*shape, generator=g).mul(3).to(dtype).requires_grad_() for _ in range(2))
    bs = [torch.randn(shape[-1], generator=g).requires_grad_() if biases else None for _ in range(2)]
    return [a, b, *bs]


def grads(out, ins, dout):
    out.backward(dout)
    return [None if t is None else t.grad for t in ins]


@needs_kernel
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 48), (7, 37), (1, 3)])  # 37 and 3: a tail shorter than every vector
def test_kernel_matches_the_formula_in_float64(dtype, tol, biases, shape):
    ins = leaves(shape, dtype, biases)
    ref_ins = [None if t is None else t.detach().double().requires_grad_() for t in ins]
    dout = torch.randn(*shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = silu_mul(*ins, backend="cpu")
    want = plain(*ref_ins)
    assert out.dtype == dtype and out.shape == want.shape
    scale = want.abs().max()
    assert ((out.double() - want).abs().max() / scale) < tol
    for got, ref in zip(grads(out, ins, dout), grads(want, ref_ins, dout.double())):
        if ref is None:
            assert got is None
            continue
        assert got.dtype == (dtype if got.shape == shape else torch.float32)
        assert ((got.double() - ref).abs().max() / ref.abs().max()) < tol * 2


@needs_kernel
def test_bf16_forward_is_the_float32_kernel_rounded():
    a, b, ba, bb = (t.detach() for t in leaves((4, 40), torch.float32, True))
    a16, b16 = a.bfloat16(), b.bfloat16()
    want = silu_mul(a16.float(), b16.float(), ba, bb, backend="cpu").bfloat16()
    assert torch.equal(silu_mul(a16, b16, ba, bb, backend="cpu"), want)


@pytest.mark.parametrize("backend", ["torch", "ref"])
def test_other_backends_are_the_formula(backend):
    a, b, ba, bb = (t.detach() for t in leaves((3, 10), torch.float32, True))
    torch.testing.assert_close(silu_mul(a, b, ba, bb, backend=backend), plain(a, b, ba, bb))


def test_mismatched_shapes_are_one_clear_error():
    with pytest.raises(ValueError, match=r"a has shape \(2, 3\) but b has \(2, 4\)"):
        silu_mul(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"bias_b has shape \(4,\); it must be \(3,\)"):
        silu_mul(torch.zeros(2, 3), torch.zeros(2, 3), None, torch.zeros(4))
