"""The mixer's dt projection handed to the multi-direction scan (`selective_scan_directions(..., dt_weight=W)`,
delta = x W^T per direction): made inside the "cpu" room's kernel, by one batched product first elsewhere; the same
output and gradients (of x and W too) either way, under autograd and through the custom op's registration; bad
shapes refused by name."""
import pytest
import torch

from armvision.ops import cpu_kernel, custom_ops, selective_scan_directions
from armvision.ops.api import project_dt

needs_kernel = pytest.mark.skipif(cpu_kernel.load() is None, reason="the fused CPU kernel is not built here")


def _inputs(G=4, batch=2, L=11, Dg=20, R=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xd = 0.5 * torch.randn(G, batch * L, R + 32, generator=g)  # x_proj's product: x, B, C as strided views
    leaves = dict(u=torch.randn(G, batch, L, Dg, generator=g), xd=xd, W=0.3 * torch.randn(G, Dg, R, generator=g),
                  A=-torch.exp(0.5 * torch.randn(G * Dg, 16, generator=g)), D=torch.randn(G * Dg, generator=g),
                  z=torch.randn(batch, L, Dg, generator=g), bias=0.1 * torch.randn(G * Dg, generator=g))
    leaves = {k: (v.to(dtype) if k in ("u", "xd", "z") else v).requires_grad_() for k, v in leaves.items()}
    index = torch.stack([torch.randperm(L, generator=g) for _ in range(G)])
    return leaves, index, (G, batch, L, R)


def _views(lv, shape):
    G, batch, L, R = shape
    xd = lv["xd"]
    return (xd[..., :R].view(G, batch, L, R), xd[..., R:R + 16].view(G, batch, L, 16),
            xd[..., R + 16:].view(G, batch, L, 16))


def _run(backend, projected_inside, seed=0, dtype=torch.float32):
    lv, index, shape = _inputs(seed=seed, dtype=dtype)
    x, B, C = _views(lv, shape)
    if projected_inside:
        y = selective_scan_directions(lv["u"], x, lv["A"], B, C, lv["D"], lv["z"], lv["bias"], index, scale=0.25,
                                      backend=backend, dt_weight=lv["W"])
    else:
        y = selective_scan_directions(lv["u"], project_dt(x, lv["W"]), lv["A"], B, C, lv["D"], lv["z"], lv["bias"],
                                      index, scale=0.25, backend=backend)
    weights = torch.linspace(-1, 1, y.numel()).view(y.shape)
    grads = torch.autograd.grad((y.float() * weights).sum(), list(lv.values()))
    return [y, *grads], ["out", *lv]


@needs_kernel
def test_made_inside_equals_made_first():
    got, names = _run("cpu", True)
    want, _ = _run("cpu", False)
    plain, _ = _run("torch", False)
    for name, a, b, c in zip(names, got, want, plain):
        for other in (b, c):
            torch.testing.assert_close(a, other, rtol=1e-5, atol=1e-5 * other.abs().max().item(),
                                       msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend,dtype", [("torch", torch.float32),
                                           pytest.param("cpu", torch.bfloat16, marks=needs_kernel)])
def test_made_first_where_not_inside(backend, dtype, monkeypatch):
    """Other rooms, and bfloat16 sequences (whose product runs on the CPU's bf16 units), make delta first: the same
    bits as a caller's product; the kernel is never handed the weight."""
    from armvision.ops import scan_cpu
    fwd = scan_cpu.fwd

    def no_weight(*args, **kwargs):
        assert kwargs.get("dt_weight") is None
        return fwd(*args, **kwargs)
    monkeypatch.setattr(scan_cpu, "fwd", no_weight)
    got, names = _run(backend, True, dtype=dtype)
    want, _ = _run(backend, False, dtype=dtype)
    for name, a, b in zip(names, got, want):
        assert torch.equal(a, b), name


@needs_kernel
def test_inference_through_the_projection_matches_training():
    lv, index, shape = _inputs(seed=3)
    x, B, C = _views(lv, shape)
    args = (lv["u"], x, lv["A"], B, C, lv["D"], lv["z"], lv["bias"], index)
    with torch.no_grad():
        y0 = selective_scan_directions(*args, backend="cpu", dt_weight=lv["W"])
    y1 = selective_scan_directions(*args, backend="cpu", dt_weight=lv["W"])
    assert torch.equal(y0, y1.detach())


def test_bad_shapes_are_refused_by_name():
    lv, index, (G, batch, L, R) = _inputs()
    x, B, C = _views(lv, (G, batch, L, R))
    args = [lv["u"], x, lv["A"], B, C, lv["D"], lv["z"], lv["bias"], index]
    with pytest.raises(ValueError, match=r"dt_weight has shape \(4, 21, 3\) but must be \(4, 20, R\) with R"):
        selective_scan_directions(*args, backend="cpu", dt_weight=torch.randn(G, 21, R))
    with pytest.raises(ValueError, match=r"delta has shape \(4, 2, 11, 3\) but must be \(4, 2, 11, 5\)"):
        selective_scan_directions(*args, backend="cpu", dt_weight=torch.randn(G, 20, 5))
    args[1] = x[..., :0]  # an empty projection (rank 0): refused, not read as a delta of full width
    with pytest.raises(ValueError, match=r"dt_weight has shape \(4, 20, 0\) but must be \(4, 20, R\) with R >= 1"):
        selective_scan_directions(*args, backend="cpu", dt_weight=torch.randn(G, 20, 0))


@needs_kernel
@pytest.mark.parametrize("frozen", ["x", "dt_weight", "both"])
def test_gradients_only_where_asked(frozen):
    """A frozen dt_proj (or input) gets no gradient, and the other one the same gradient as when both train."""
    lv, index, shape = _inputs(seed=4)
    x, B, C = _views(lv, shape)
    x_leaf = x.detach().clone().requires_grad_(frozen != "x" and frozen != "both")
    W = lv["W"].detach().clone().requires_grad_(frozen != "dt_weight" and frozen != "both")
    y = selective_scan_directions(lv["u"], x_leaf, lv["A"], B, C, lv["D"], lv["z"], lv["bias"], index,
                                  backend="cpu", dt_weight=W)
    y.sum().backward()
    assert (x_leaf.grad is None) == (frozen in ("x", "both")) and (W.grad is None) == (frozen in ("dt_weight", "both"))
    full_x, full_w = x.detach().clone().requires_grad_(), lv["W"].detach().clone().requires_grad_()
    selective_scan_directions(lv["u"], full_x, lv["A"], B, C, lv["D"], lv["z"], lv["bias"], index, backend="cpu",
                              dt_weight=full_w).sum().backward()
    for got, want in ((x_leaf.grad, full_x.grad), (W.grad, full_w.grad)):
        if got is not None:
            assert torch.equal(got, want)


def test_projection_grads_make_only_the_wanted_products():
    """A frozen side costs no product: one batched matmul per wanted gradient, none for the other."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += func.overloadpacket in (torch.ops.aten.bmm, torch.ops.aten.mm, torch.ops.aten.matmul)
            return func(*args, **(kwargs or {}))

    x, W, dd = torch.randn(4, 2, 5, 3), torch.randn(4, 6, 3), torch.randn(4, 2, 5, 6)
    full = custom_ops.projection_grads(x, W, dd)
    for want_x, want_w in ((True, True), (True, False), (False, True), (False, False)):
        with Count() as count:
            dx, dw = custom_ops.projection_grads(x, W, dd, want_x, want_w)
        assert count.n == want_x + want_w and (dx is None) != want_x and (dw is None) != want_w
        for got, ref in ((dx, full[0]), (dw, full[1])):
            assert got is None or torch.equal(got, ref)


@needs_kernel
def test_custom_op_registration():
    """Schema, fake impl (shapes, strides) and autograd of armvision::selective_scan_directions_fwd with dt_weight."""
    lv, index, shape = _inputs(batch=1, L=5, Dg=8, R=2, seed=7)
    x, B, C = _views(lv, shape)
    args = (lv["u"], x, lv["A"], B, C, lv["D"], lv["z"], lv["bias"], index.to(torch.int32), 0.25, True, "cpu",
            lv["W"])
    torch.library.opcheck(custom_ops.selective_scan_directions_fwd, args)
