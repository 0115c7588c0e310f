"""The fused CPU selective scan (backend "cpu") against the sequential reference: values and every gradient over
mamba_ssm's test matrix (lengths 1..4096, every flag, every B/C form, fp32/fp16/bf16), thread-count invariance
(bitwise), the forced fallback when no compiler works, and bad shapes."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from armvision.ops import cpu_kernel, selective_scan_fn, selective_scan_ref

pytestmark = pytest.mark.skipif(cpu_kernel.load() is None, reason="no C compiler: the fallback tests below run")

# mamba_ssm's tolerances (tests/ops/test_selective_scan.py): outputs, and (looser) gradients of weights
TOL = {torch.float32: (6e-4, 2e-3), torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make(batch=2, dim=20, L=37, N=4, dtype=torch.float32, b_form="var", c_form="var", groups=2, z=True, D=True,
         bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype, positive=False):
        x = torch.rand(*shape, generator=g) if positive else torch.randn(*shape, generator=g)
        return (x * scale).to(dt).requires_grad_()

    def bc(form):
        return {"var": lambda: rnd(batch, N, L), "const": lambda: rnd(dim, N, dt=torch.float32),
                "grouped": lambda: rnd(batch, groups, N, L)}[form]()

    A = (-0.5 - torch.rand(dim, N, generator=g)).requires_grad_()
    # distributions of mamba_ssm's test: delta and delta_bias uniform in [0, 0.5) (dt > 0 with or without softplus)
    return dict(u=rnd(batch, dim, L), delta=rnd(batch, dim, L, scale=0.5, positive=True), A=A, B=bc(b_form),
                C=bc(c_form), D=rnd(dim, dt=torch.float32) if D else None, z=rnd(batch, dim, L) if z else None,
                delta_bias=rnd(dim, scale=0.5, dt=torch.float32, positive=True) if bias else None)


def run(inputs, backend, softplus=True, last=True, seed=1):
    out, state = selective_scan_fn(**inputs, delta_softplus=softplus, return_last_state=True, backend=backend)
    g = torch.Generator().manual_seed(seed)
    gout = torch.randn(out.shape, generator=g).to(out.dtype)
    loss = (out * gout).float().sum() + (state * torch.randn(state.shape, generator=g)).sum() * last
    present = [k for k in NAMES if inputs[k] is not None]
    grads = torch.autograd.grad(loss, [inputs[k] for k in present])
    return out, state, dict(zip(present, grads))


def check(inputs, softplus=True, last=True, dtype=torch.float32):
    rtol, atol = TOL[dtype]
    out, state, grads = run(inputs, "cpu", softplus, last)
    out_r, state_r, grads_r = run(inputs, "ref", softplus, last)
    assert out.dtype == inputs["u"].dtype and out.shape == out_r.shape
    torch.testing.assert_close(out, out_r, rtol=rtol, atol=atol)
    torch.testing.assert_close(state, state_r, rtol=rtol, atol=atol)
    for k, gr in grads_r.items():
        assert grads[k].shape == gr.shape and grads[k].dtype == gr.dtype, k
        scale = 5 if k in ("A", "B", "C", "D", "delta_bias") else 1  # weights: looser, as mamba_ssm's test
        torch.testing.assert_close(grads[k], gr, rtol=rtol * scale, atol=atol * scale * max(1.0, gr.abs().max().item()) ** 0.5,
                                   msg=lambda m: f"gradient of {k}: {m}")


@pytest.mark.parametrize("L", [1, 8, 16, 63, 64, 65, 128, 256, 372, 512, 784, 1024, 1134, 2048, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lengths_and_dtypes(L, dtype):
    check(make(batch=1 if L > 1000 else 2, dim=8 if L > 1000 else 20, L=L, dtype=dtype), dtype=dtype)


@pytest.mark.parametrize("z,D,bias,softplus,last", [
    (z, D, bias, sp, last) for z in (True, False) for D in (True, False) for bias in (True, False)
    for sp in (True, False) for last in (True, False)])
def test_every_flag(z, D, bias, softplus, last):
    check(make(L=70, z=z, D=D, bias=bias), softplus=softplus, last=last)


@pytest.mark.parametrize("b_form,c_form", [(b, c) for b in ("var", "const", "grouped") for c in ("var", "const", "grouped")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_bc_form(b_form, c_form, dtype):
    check(make(L=67, b_form=b_form, c_form=c_form, dtype=dtype), dtype=dtype)


@pytest.mark.parametrize("N", [1, 16, 17])  # 16: the compiled-in fast copy; 1 and 17: the generic one
@pytest.mark.parametrize("dim", [1, 16, 33])  # one lane, one full block, two blocks and a partial one
def test_state_and_channel_counts(N, dim):
    check(make(dim=dim, N=N, L=40, groups=1, b_form="grouped"))


def test_groups_of_three_with_different_b_and_c_groups():
    check(make(dim=24, L=30, b_form="grouped", c_form="grouped", groups=3) | {"C": make(dim=24, L=30, b_form="grouped", groups=2)["B"]})


def test_channels_last_views_are_read_in_place():
    """The mixer passes (batch, L, D) activations as (batch, D, L) views: same result as contiguous inputs."""
    x = make(L=33)
    views = {k: (v.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
                 if k in ("u", "delta", "z") else v) for k, v in x.items()}
    assert views["u"].stride(1) == 1
    out_v = run(views, "cpu")[0]
    torch.testing.assert_close(out_v, run(x, "cpu")[0], rtol=0, atol=0)


def test_bitwise_the_same_whatever_the_thread_count():
    inputs = make(batch=3, dim=50, L=150, b_form="var", c_form="grouped", groups=2)
    results = []
    old = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(run(inputs, "cpu"))
    finally:
        torch.set_num_threads(old)
    for out, state, grads in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(state, results[0][1])
        for k, g in grads.items():
            assert torch.equal(g, results[0][2][k]), f"gradient of {k} depends on the thread count"


def test_large_state_is_refused_by_name_when_forced_and_falls_back_when_auto(monkeypatch):
    monkeypatch.delenv("ARMVISION_SCAN_BACKEND", raising=False)
    x = make(N=cpu_kernel.MAX_STATE + 1, L=5, dim=4)
    with pytest.raises(ValueError, match=r"CPU kernel supports state sizes N <= 64, got N=65"):
        selective_scan_fn(**x, backend="cpu")
    out = selective_scan_fn(**x)  # auto: the PyTorch path
    torch.testing.assert_close(out, selective_scan_ref(**x), rtol=1e-4, atol=1e-4)


def test_nan_propagates():
    x = make(L=10)
    with torch.no_grad():
        x["delta"][0, 3, 4] = float("nan")  # softplus(nan) = nan: the state and every later output
    out = selective_scan_fn(**x, delta_softplus=True, backend="cpu")
    assert out[0, 3, 4:].isnan().all() and not out[1].isnan().any()


FALLBACK = textwrap.dedent("""
    import logging, torch
    logging.basicConfig(format="%(message)s")
    from armvision.ops import available_backends, cpu_kernel, resolve_backend, selective_scan_fn, selective_scan_ref
    assert cpu_kernel.load() is None and cpu_kernel.load() is None   # the notice is printed once
    assert "cpu" not in available_backends()
    assert resolve_backend("selective_scan", None, on_cuda=False) == "torch"
    u, delta = torch.randn(2, 4, 9), torch.rand(2, 4, 9)
    A, B, C = -torch.rand(4, 3), torch.randn(2, 3, 9), torch.randn(2, 3, 9)
    torch.testing.assert_close(selective_scan_fn(u, delta, A, B, C), selective_scan_ref(u, delta, A, B, C))
    import armvision
    m = armvision.create_classifier("tiny", embed_dim=32, depth=1, img_size=32, patch_size=8, num_classes=3)
    m(torch.randn(1, 3, 32, 32)).sum().backward()
    print("OK")
""")


@pytest.mark.parametrize("env,reason", [
    ({"CC": "/bin/false"}, "build failed"),          # the compiler fails
    ({"PATH": "/nonexistent", "CC": ""}, "no C compiler found"),  # no compiler at all
    ({"ARMVISION_CPU_KERNEL": "0"}, "disabled by ARMVISION_CPU_KERNEL"),
])
def test_fallback_when_no_kernel_can_be_built(tmp_path, env, reason):
    full = dict(os.environ, ARMVISION_CACHE=str(tmp_path / "cache"), **env)
    full.pop("ARMVISION_SCAN_BACKEND", None)
    res = subprocess.run([sys.executable, "-c", FALLBACK], env=full, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "OK"
    notices = [line for line in res.stderr.splitlines() if "fused CPU scan kernel unavailable" in line]
    assert len(notices) == 1 and reason in notices[0], res.stderr


@pytest.mark.parametrize("G,K,dim,L", [(1, 4, 20, 9), (4, 4, 33, 13), (2, 2, 16, 3), (4, 3, 5, 1), (4, 4, 300, 7)])
def test_conv_directions_equals_gathered_conv1d(G, K, dim, L):
    """The mixer's fused conv (causal depthwise conv + SiLU in each direction's order, channels-last) against
    a gather + F.conv1d per order: values and the gradients of x, weight and bias (dx summed over orders)."""
    from armvision.ops import causal_conv1d_directions

    g = torch.Generator().manual_seed(G * 100 + K)
    x = torch.randn(3, L, 2 * dim, generator=g)[..., :dim].requires_grad_()  # channels-last view, like the mixer's
    w = torch.randn(G * dim, K, generator=g).requires_grad_()
    b = torch.randn(G * dim, generator=g).requires_grad_()
    index = torch.stack([torch.randperm(L, generator=g) for _ in range(G)]) if G > 1 else None
    out = causal_conv1d_directions(x, w, b, index, backend="cpu")
    want = causal_conv1d_directions(x, w, b, index, backend="torch")
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    gout = torch.randn(out.shape, generator=g)
    got = torch.autograd.grad((out * gout).sum(), [x, w, b])
    exp = torch.autograd.grad((want * gout).sum(), [x, w, b])
    for name, a, e in zip(("x", "weight", "bias"), got, exp):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=lambda m: f"gradient of {name}: {m}")


def test_conv_directions_bitwise_the_same_whatever_the_thread_count():
    """The fused conv's forward and every gradient (dx summed over orders, dweight and dbias over the batch in a
    fixed order) are the same bits with 1, 2 and 3 threads."""
    from armvision.ops import causal_conv1d_directions

    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(5, 11, 2 * 40, generator=g)[..., :40]
    w0, b0 = torch.randn(4 * 40, 4, generator=g), torch.randn(4 * 40, generator=g)
    index = torch.stack([torch.randperm(11, generator=g) for _ in range(4)])
    gout = torch.randn(4, 5, 11, 40, generator=g)
    old, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
            out = causal_conv1d_directions(x, w, b, index, backend="cpu")
            results.append([out.detach()] + list(torch.autograd.grad((out * gout).sum(), [x, w, b])))
    finally:
        torch.set_num_threads(old)
    for other in results[1:]:
        for name, a, e in zip(("out", "dx", "dweight", "dbias"), other, results[0]):
            assert torch.equal(a, e), f"{name} depends on the thread count"
