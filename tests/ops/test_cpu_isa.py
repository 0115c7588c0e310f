"""The fused CPU kernel's builds and dtypes: every vector width of the one C source (AVX-512's 16 lanes, AVX2's 8,
SSE/NEON/generic 4; the narrower builds compiled on this machine with -DARMV_VL and the instruction sets switched off)
against the float64 reference, float32 and bfloat16; bfloat16 in and out bit for bit the float32 kernel's results
rounded as torch rounds; the build this machine runs says which it is; inference keeps nothing for a backward;
mamba_ssm's (batch, D, L) layout read in place (channels L apart, transposed in registers) gives the bits of the
channels-last layout; the mixer's dt projection made inside (delta = x W^T, project_rows) gives what a delta made
first gives; the conv kernel at every width."""
import platform

import pytest
import torch

from armvision.ops import cpu_kernel, scan_cpu, selective_scan_fn
from armvision.ops.backends.ref import selective_scan_ref

pytestmark = pytest.mark.skipif(cpu_kernel.load() is None, reason="needs a C compiler (the fallback tests elsewhere run)")

X86 = platform.machine() in ("x86_64", "AMD64")
# one source, other widths: (extra flags, expected ISA, lanes); on x86 each narrower build also drops the wider ISA
BUILDS = [("-DARMV_VL=8 -mno-avx512f", "avx2", 8), ("-DARMV_VL=4 -mno-avx -mno-avx2 -mno-avx512f", "sse4", 4),
          ("-DARMV_VL=4 -mno-sse4.1 -mno-sse4.2 -mno-avx -mno-avx2 -mno-avx512f", "generic", 4)]


def _inputs(G=4, batch=2, L=37, Dg=40, N=16, dtype=torch.float32, seed=0):
    """The mixer's form: u, delta (G, batch, L, Dg) in scan order, B / C views of one projection, z shared, orders."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(G, batch, L, Dg, generator=g).to(dtype)
    delta = (0.5 * torch.randn(G, batch, L, Dg, generator=g)).to(dtype)
    A = -torch.exp(0.5 * torch.randn(G * Dg, N, generator=g))
    xd = torch.randn(G, batch * L, 8 + 2 * N, generator=g).to(dtype)
    B, C = xd[..., 8:8 + N].view(G, batch, L, N), xd[..., 8 + N:].view(G, batch, L, N)
    D, bias = torch.randn(G * Dg, generator=g), 0.1 * torch.randn(G * Dg, generator=g)
    z = torch.randn(batch, L, Dg, generator=g).to(dtype)
    idx = torch.stack([torch.randperm(L, generator=g) for _ in range(G)]).to(torch.int32)
    dout = torch.randn(batch, L, Dg, generator=g).to(dtype)
    return u, delta, A, B, C, D, z, bias, idx, dout


def _kernel(inp, scale=0.25):
    """out and every gradient of the kernel's multi-direction form."""
    u, delta, A, B, C, D, z, bias, idx, dout = inp
    G = u.shape[0]
    out = torch.empty(z.shape, dtype=u.dtype)
    z4 = z.unsqueeze(0).expand(G, -1, -1, -1)
    _, _, ckpt = scan_cpu.fwd(u, delta, A, B, C, D, z4, bias, idx, True, out.unsqueeze(0).expand(G, -1, -1, -1),
                              want_last=False, scale=scale)
    du, ddelta, dA, dB, dC, dD, dz, dbias = scan_cpu.bwd(u, delta, A, B, C, D, z4, bias, idx, True, ckpt,
                                                         dout.unsqueeze(0).expand(G, -1, -1, -1), None, scale=scale)
    return [out, du, ddelta, dA, dB, dC, dD, dz[0], dbias]  # dz: laid out like z4, the directions share it


def _reference(inp, scale=0.25):
    """The same through the float64 reference, one direction at a time (gate gathered, outputs put back)."""
    u, delta, A, B, C, D, z, bias, idx, dout = [t.double() if t.is_floating_point() else t for t in inp]
    G, batch, L, Dg = u.shape
    leaves = [t.clone().requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]
    lu, ld, lA, lB, lC, lD, lz, lb = leaves
    total = 0
    for g in range(G):
        sl, order = slice(g * Dg, (g + 1) * Dg), idx[g].long()
        y = selective_scan_ref(lu[g].transpose(1, 2), ld[g].transpose(1, 2), lA[sl], lB[g].transpose(1, 2),
                               lC[g].transpose(1, 2), lD[sl], lz.index_select(1, order).transpose(1, 2), lb[sl],
                               True).transpose(1, 2)
        total = total + torch.zeros_like(y).index_copy(1, order, y)
    out = total * scale
    grads = torch.autograd.grad(out, leaves, dout)
    return [out.detach(), *grads]


NAMES = ("out", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias")


def _close(got, want, rtol):
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=rtol * b.abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")


def _single(layout, dtype, D, L, backend="cpu", seed=1):
    """out and every gradient of selective_scan_fn on (batch, D, L) sequence tensors laid out contiguously ("bdl":
    each channel's steps together, mamba_ssm's layout) or channels-last ("cl"); the same values either way."""
    g = torch.Generator().manual_seed(seed)
    b, N = 2, 16

    def seq(scale=1.0):
        x = (scale * torch.randn(b, D, L, generator=g)).to(dtype)
        return x if layout == "bdl" else x.transpose(1, 2).contiguous().transpose(1, 2)

    u, delta, z, dout = seq(), seq(0.5), seq(), seq()
    A = -torch.exp(0.5 * torch.randn(D, N, generator=g))
    B, C = torch.randn(b, N, L, generator=g).to(dtype), torch.randn(b, N, L, generator=g).to(dtype)
    Dv, bias = torch.randn(D, generator=g), 0.1 * torch.randn(D, generator=g)
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, Dv, z, bias)]
    out = selective_scan_fn(*leaves, delta_softplus=True, backend=backend)
    return [out.detach(), *torch.autograd.grad(out, leaves, dout)]


def _layouts_agree(D, L):
    for dtype in (torch.float32, torch.bfloat16):
        bdl, cl = _single("bdl", dtype, D, L), _single("cl", dtype, D, L)
        assert bdl[0].stride(1) == 1  # the output is written channels-last either way
        for name, a, b in zip(NAMES, bdl, cl):
            assert torch.equal(a, b), f"{dtype} {name}: (batch, D, L) read in place differs from channels-last"


@pytest.mark.parametrize("D,L", [(40, 37), (48, 32)])  # partial lane blocks and step tiles; whole ones
def test_mamba_layout_read_in_place(D, L):
    _layouts_agree(D, L)
    got = _single("bdl", torch.float32, D, L)
    want = _single("bdl", torch.float64, D, L, backend="ref")
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b.double(), rtol=2e-5, atol=2e-5 * b.abs().max().item())


def _projection(inp, R, seed=5):
    """x (G, batch, L, R), a strided view of a wider product as the mixer's, and W (G, Dg, R) for a delta = x W^T."""
    u = inp[0]
    G, batch, L, Dg = u.shape
    g = torch.Generator().manual_seed(seed)
    x = (0.5 * torch.randn(G, batch * L, R + 3, generator=g)).to(u.dtype)[..., 1:R + 1].view(G, batch, L, R)
    return x, 0.3 * torch.randn(G, Dg, R, generator=g)


def _kernel_projected(inp, x, W, scale=0.25):
    """_kernel's results with the kernel making delta from x and W (ddelta: the gradient of that delta)."""
    u, _, A, B, C, D, z, bias, idx, dout = inp
    G = u.shape[0]
    out = torch.empty(z.shape, dtype=u.dtype)
    z4 = z.unsqueeze(0).expand(G, -1, -1, -1)
    _, _, ckpt = scan_cpu.fwd(u, x, A, B, C, D, z4, bias, idx, True, out.unsqueeze(0).expand(G, -1, -1, -1),
                              want_last=False, scale=scale, dt_weight=W)
    grads = scan_cpu.bwd(u, x, A, B, C, D, z4, bias, idx, True, ckpt, dout.unsqueeze(0).expand(G, -1, -1, -1), None,
                         scale=scale, dt_weight=W)
    return [out, *grads[:6], grads[6][0], grads[7]]


def _projection_agrees(Dg, L, R, dtype=torch.float32):
    """The kernel's own dt projection against a delta made first (float32 products of the same x and W): the same
    results to float32 rounding (the sums' order differs); the projection's tail steps (L % 8) and partial lane
    blocks included."""
    inp = _inputs(Dg=Dg, L=L, dtype=dtype, seed=Dg + L)
    x, W = _projection(inp, R)
    G, batch = x.shape[:2]
    delta = torch.matmul(x.float().reshape(G, batch * L, R), W.transpose(1, 2)).view(G, batch, L, Dg).to(dtype)
    made_first = _kernel((inp[0], delta, *inp[2:]))
    inside = _kernel_projected(inp, x, W)
    for name, a, b in zip(NAMES, inside, made_first):
        tol = 2e-5 if dtype == torch.float32 else 2e-2  # bfloat16: delta made first is rounded to bfloat16, inside not
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol * b.abs().max().item(),
                                   msg=lambda m: f"{dtype} {name}: {m}")


def _conv_agrees(dim, L, G=4, K=4):
    """The mixer's fused conv against the torch room's (a gather and F.conv1d per order): values and gradients."""
    from armvision.ops import causal_conv1d_directions
    g = torch.Generator().manual_seed(dim + L)
    x = torch.randn(2, L, 2 * dim, generator=g)[..., :dim].requires_grad_()
    w, b = torch.randn(G * dim, K, generator=g).requires_grad_(), torch.randn(G * dim, generator=g).requires_grad_()
    index = torch.stack([torch.randperm(L, generator=g) for _ in range(G)])
    outs = [causal_conv1d_directions(x, w, b, index, backend=room) for room in ("cpu", "torch")]
    gout = torch.randn(outs[0].shape, generator=g)
    grads = [torch.autograd.grad((o * gout).sum(), [x, w, b]) for o in outs]
    for name, a, e in zip(("out", "dx", "dweight", "dbias"), (outs[0], *grads[0]), (outs[1], *grads[1])):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=lambda m: f"conv {name}: {m}")


@pytest.mark.parametrize("Dg,L,R", [(40, 37, 5), (48, 16, 48), (17, 3, 2)])
def test_dt_projection_made_inside(Dg, L, R):
    _projection_agrees(Dg, L, R)


def test_dt_projection_made_inside_bfloat16():
    _projection_agrees(40, 37, 6, torch.bfloat16)


def test_dt_projection_refused_outside_the_mixer_form():
    inp = _inputs(N=8)
    x, W = _projection(inp, 4)
    u, _, A, B, C, D, z, bias, idx, _ = inp
    with pytest.raises(ValueError, match="dt projection inside needs N = 16"):
        scan_cpu.fwd(u, x, A, B, C, D, z.unsqueeze(0).expand(4, -1, -1, -1), bias, idx, True,
                     torch.empty(4, *z.shape), dt_weight=W)


def test_build_names_its_instruction_set():
    info = cpu_kernel.build_info()
    assert info["isa"] in ("avx512", "avx2", "sse4", "neon", "generic")
    assert info["lanes"] == cpu_kernel.lanes() == {"avx512": 16, "avx2": 8}.get(info["isa"], 4)
    try:
        cpu = open("/proc/cpuinfo").read().replace("\n", " ")
    except OSError:
        cpu = ""
    if X86 and " avx512f " in cpu:
        assert info["isa"] == "avx512" and "-mprefer-vector-width=512" in info["flags"]


@pytest.mark.parametrize("Dg", [40, 48])  # a partial last block of lanes, and whole blocks
def test_native_build_against_float64_reference(Dg):
    inp = _inputs(Dg=Dg)
    _close(_kernel(inp), _reference(inp), rtol=2e-5)


def _steep_inputs(Dg=40, seed=3):
    """Decays exp(dt A) from ~1 down through float32's denormals (e^-87 .. e^-103) to 0 (A to -400, dt to ~6)."""
    u, delta, A, B, C, D, z, bias, idx, dout = _inputs(Dg=Dg, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    A = -torch.exp(torch.empty(A.shape).uniform_(-4.0, 6.0, generator=g))
    return u, 2.0 * delta + 2.0, A, B, C, D, z, bias, idx, dout


def _steep_decays_agree(Dg=40):
    inp = _steep_inputs(Dg)
    u, delta, A, *_, bias = inp[:8]
    G = u.shape[0]
    dA = torch.nn.functional.softplus(delta + bias.view(G, 1, 1, Dg)).unsqueeze(-1) * A.view(G, 1, 1, Dg, -1)
    assert dA.min() < -120 and ((dA > -103) & (dA < -87)).any() and dA.max() > -0.05  # zeros, denormals, ~1
    _close(_kernel(inp), _reference(inp), rtol=2e-5)


@pytest.mark.parametrize("Dg", [40, 48])
def test_steep_decays_underflow_to_zero(Dg):
    """2^x by vreduceps / vscalefps (AVX-512) takes no clamp: decays below float32's range come out 0 or denormal,
    never NaN, as the float64 reference has them."""
    _steep_decays_agree(Dg)


def test_bfloat16_in_and_out_is_the_float32_kernel_rounded():
    """bfloat16 sequence tensors are read and written as they are, the math float32: the results are bit for bit
    the float32 kernel's on the same values, rounded to bfloat16 (nearest even, as torch rounds)."""
    bf = _inputs(dtype=torch.bfloat16)
    f32 = [t.float() if t.is_floating_point() else t for t in bf]
    for name, a, b in zip(NAMES, _kernel(bf), _kernel(f32)):
        assert a.dtype == (torch.bfloat16 if name in ("out", "du", "ddelta", "dz") else torch.float32), name
        assert torch.equal(a, b.to(a.dtype)), name


def test_inference_keeps_nothing():
    inp = _inputs()
    u, delta, A, B, C, D, z, bias, idx, _ = inp
    out = torch.empty(z.shape)
    _, last, ckpt = scan_cpu.fwd(u, delta, A, B, C, D, z.unsqueeze(0).expand(4, -1, -1, -1), bias, idx, True,
                                 out.unsqueeze(0).expand(4, -1, -1, -1), want_last=False, save=False, scale=0.25)
    assert ckpt is None and last is None
    torch.testing.assert_close(out, _kernel(inp)[0], rtol=0, atol=0)


@pytest.fixture
def other_build(request, monkeypatch):
    """The kernel rebuilt from the same source with other flags for the length of one test."""
    flags = request.param
    monkeypatch.setenv("ARMVISION_CPU_CFLAGS", flags)
    cpu_kernel.reset()
    assert cpu_kernel.load() is not None, f"the kernel does not build with {flags}: {cpu_kernel.unavailable_reason()}"
    yield cpu_kernel.build_info()
    monkeypatch.delenv("ARMVISION_CPU_CFLAGS")
    cpu_kernel.reset()


@pytest.mark.skipif(not X86, reason="the narrower x86 builds")
@pytest.mark.parametrize("other_build,isa,lanes", [(f, i, n) for f, i, n in BUILDS], indirect=["other_build"],
                         ids=[b[1] for b in BUILDS])
def test_other_widths_from_the_same_source(other_build, isa, lanes):
    assert (other_build["isa"], other_build["lanes"]) == (isa, lanes)
    for Dg, N in ((40, 16), (13, 5)):  # the mixer's fast path; a generic state size, a block of 5 lanes
        inp = _inputs(Dg=Dg, N=N, seed=Dg)
        _close(_kernel(inp), _reference(inp), rtol=2e-5)
    bf = _inputs(dtype=torch.bfloat16)
    f32 = [t.float() if t.is_floating_point() else t for t in bf]
    assert all(torch.equal(a, b.to(a.dtype)) for a, b in zip(_kernel(bf), _kernel(f32)))
    _layouts_agree(48, 32)  # this width's register transpose (or its element-by-element gather)
    _projection_agrees(40, 37, 5)  # the dt projection made inside, at this width
    _conv_agrees(300, 7)  # the conv: a whole 256-channel chunk (plain loads) and a partial one
    _steep_decays_agree()  # decays down to 0 at this width's 2^x
