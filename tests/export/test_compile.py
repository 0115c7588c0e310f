"""Issue 14: whole-model torch.compile(fullgraph=True) (no graph break anywhere: backend resolution, scan orders and
the scan custom ops are all traceable) gives eager's outputs and gradients; the custom ops' fake implementations
give exactly the real shapes, dtypes and strides (inductor plans its buffers from them)."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from armtest import tiny_classifier, tiny_pretrainer
from armvision.ops import resolve_backend

needs_kernel = pytest.mark.skipif(resolve_backend("selective_scan", None, False, torch.float32) != "cpu",
                                  reason="the fused CPU kernel is unavailable here")


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_classifier_train_step_compiles_fullgraph(backend):
    """One inductor compile: forward and backward of a training step equal eager's, with the default backend (the
    fused kernel here) and with the chunked torch path (whose backward plans its chunks from the data: it must stay
    inside the backward op, not in the traced graph)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tiny_classifier(depth=1, scan_backend=backend).train()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True)
    y = compiled(x)
    y.square().sum().backward()
    got = _grads(model)
    model.zero_grad(set_to_none=True)
    want_y = model(x)
    want_y.square().sum().backward()
    want = _grads(model)
    assert (y - want_y).abs().max() <= 1e-4
    assert got.keys() == want.keys() and len(got) == len(list(model.parameters()))
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-4, rtol=1e-4), name


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_pretrainer_traces_fullgraph_with_autograd(backend):
    """The pretrainer's whole training step in one graph (AOTAutograd, no inductor codegen: the scan ops are the
    same as the classifier's), with each backend."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tiny_pretrainer(scan_backend=backend).train()
    x = torch.randn(2, 3, 32, 32)
    out = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    out.loss.backward()
    got = _grads(model)
    model.zero_grad(set_to_none=True)
    want = model(x)
    want.loss.backward()
    assert (out.loss - want.loss).abs() <= 1e-5
    for name, g in _grads(model).items():
        assert torch.allclose(got[name], g, atol=1e-5, rtol=1e-4), name


def _same_meta(op, args):
    real = op(*args)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = op(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])
    for i, (r, f) in enumerate(zip(real, fake)):
        assert (r.shape, r.dtype) == (f.shape, f.dtype), (op, i)
        if r.numel() > 1:
            assert r.stride() == f.stride(), (op, i, r.stride(), f.stride())
    return real


@needs_kernel
@pytest.mark.parametrize("form", ["shared", "grouped", "constant"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fake_impls_give_the_real_strides(form, channels_last):
    torch.manual_seed(0)
    bs, d, L, N = 2, 12, 70, 4
    u, delta, z = torch.randn(bs, d, L), torch.randn(bs, d, L) * 0.1, torch.randn(bs, d, L)
    if channels_last:
        u, delta = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (u, delta))
    A = -torch.rand(d, N) - 0.5
    shape = {"shared": (bs, N, L), "grouped": (bs, 2, N, L), "constant": (d, N)}[form]
    B, C = torch.randn(shape), torch.randn(shape)
    D, bias = torch.randn(d), torch.randn(d)
    ops = torch.ops.armvision
    out, last, saved = _same_meta(ops.selective_scan_fwd.default, (u, delta, A, B, C, D, z, bias, True, "cpu"))
    _same_meta(ops.selective_scan_bwd.default, (u, delta, A, B, C, D, z, bias, True, "cpu", saved,
                                                torch.randn_like(out), torch.randn_like(last)))
    G, Dg = 4, 8
    xd = torch.randn(G, bs * L, 2 * N)
    args = (torch.randn(G, bs, L, Dg), torch.randn(G, bs, L, Dg) * 0.1, -torch.rand(G * Dg, N) - 0.5,
            xd[..., :N].view(G, bs, L, N), xd[..., N:].view(G, bs, L, N), torch.randn(G * Dg),
            torch.randn(bs, L, 2 * Dg)[..., :Dg], torch.randn(G * Dg),
            torch.stack([torch.randperm(L) for _ in range(G)]).int())
    y, saved = _same_meta(ops.selective_scan_directions_fwd.default, args + (0.25, True, "cpu"))
    _same_meta(ops.selective_scan_directions_bwd.default, args + (0.25, "cpu", saved, torch.randn_like(y)))
    _same_meta(ops.selective_scan_directions_fwd.default, args + (1.0, False, "cpu"))  # inference: nothing kept
    x = torch.randn(bs, L, 2 * Dg)[..., :Dg]
    w, b = torch.randn(G * Dg, 4), torch.randn(G * Dg)
    du = _same_meta(lambda *a: (ops.causal_conv1d_directions_fwd.default(*a),), (x, w, b, args[-1]))[0]
    _same_meta(ops.causal_conv1d_directions_bwd.default, (x, w, b, args[-1], torch.randn_like(du)))
