"""The fast PyTorch selective scan against the sequential reference: outputs, last state and every gradient."""
import math

import pytest
import torch

from armvision.ops import selective_scan_fn, selective_scan_ref, selective_scan_torch
from armvision.ops.backends.torch_scan import plan_chunks

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, L, N, dtype=torch.float32, seed=0, with_D=True, with_z=True, with_bias=True,
                softplus=True, dt_scale=1.0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    if softplus:
        delta = r(batch, dim, L) * dt_scale  # any sign: softplus makes it positive
    else:  # raw dt, mostly positive with some negative entries (small: the state must not blow up)
        delta = (torch.rand(batch, dim, L, generator=g, dtype=torch.float64) - 0.2) * 0.5 * dt_scale
    t = {
        "u": r(batch, dim, L), "delta": delta,
        "A": -(torch.rand(dim, N, generator=g, dtype=torch.float64) * 3 + 0.2),
        "B": r(batch, N, L), "C": r(batch, N, L),
        "D": r(dim) if with_D else None, "z": r(batch, dim, L) if with_z else None,
        "delta_bias": r(dim) * 0.3 if with_bias else None,
    }
    return {k: None if v is None else v.to(dtype).requires_grad_() for k, v in t.items()}


def run(fn, inputs, softplus, last, gout_seed=1, **kw):
    """Output, last state and the gradients of a random linear function of them."""
    res = fn(*[inputs[k] for k in NAMES], delta_softplus=softplus, return_last_state=last, **kw)
    out, state = res if last else (res, None)
    g = torch.Generator().manual_seed(gout_seed)
    loss = (out.double() * torch.randn(out.shape, generator=g, dtype=torch.float64)).sum()
    if last:
        loss = loss + (state.double() * torch.randn(state.shape, generator=g, dtype=torch.float64)).sum()
    wrt = [k for k in NAMES if inputs[k] is not None]
    grads = torch.autograd.grad(loss, [inputs[k] for k in wrt])
    return out, state, dict(zip(wrt, grads))


def assert_close(a, b, tol, what):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    err = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-6)
    assert err < tol, f"{what}: relative max error {err:.2e} >= {tol:.0e}"


CASES = [  # (batch, dim, L, N, chunk, options)
    (2, 3, 1, 4, 16, {}),
    (2, 3, 37, 4, 8, {}),  # L not a multiple of the chunk
    (1, 1, 20, 3, 16, {}),  # D = 1
    (3, 4, 16, 5, 16, dict(with_D=False, with_z=False, with_bias=False)),
    (2, 5, 23, 4, 4, dict(softplus=False)),
    (2, 5, 23, 4, 8, dict(softplus=False, with_z=False)),
    (2, 6, 50, 16, 32, dict(with_bias=False)),
    (2, 3, 24, 4, 8, dict(dt_scale=6.0)),  # large decays: chunks get split (see test_large_decays_split_chunks)
]


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}xN{c[3]}_T{c[4]}_{c[5]}")
def test_fast_matches_reference_float32(case, last):
    batch, dim, L, N, chunk, opts = case
    opts = dict(opts)
    softplus = opts.pop("softplus", True)
    inputs = make_inputs(batch, dim, L, N, torch.float32, **opts, softplus=softplus)
    ref = run(selective_scan_ref, inputs, softplus, last)
    fast = run(selective_scan_torch, inputs, softplus, last, chunk_size=chunk)
    assert_close(fast[0], ref[0], 1e-5, "out")
    if last:
        assert fast[1].dtype == torch.float32 and fast[1].shape == (batch, dim, N)
        assert_close(fast[1], ref[1], 1e-5, "last_state")
    assert fast[2].keys() == ref[2].keys()
    for k in ref[2]:
        assert_close(fast[2][k], ref[2][k], 1e-4, f"grad {k}")


def test_float64_matches_reference_tightly():
    inputs = make_inputs(2, 4, 19, 3, torch.float64)
    ref = run(selective_scan_ref, inputs, True, True)
    fast = run(selective_scan_torch, inputs, True, True, chunk_size=4)
    assert fast[0].dtype == torch.float64 and fast[1].dtype == torch.float64
    assert_close(fast[0], ref[0], 1e-12, "out")
    assert_close(fast[1], ref[1], 1e-12, "last_state")
    for k in ref[2]:
        assert_close(fast[2][k], ref[2][k], 1e-11, f"grad {k}")


def test_bfloat16_inputs():
    inputs = make_inputs(2, 8, 33, 4, torch.bfloat16, seed=3)
    ref = run(selective_scan_ref, inputs, True, True)
    fast = run(selective_scan_torch, inputs, True, True, chunk_size=16)
    assert fast[0].dtype == torch.bfloat16 and fast[1].dtype == torch.float32
    assert_close(fast[0], ref[0], 2e-2, "out")
    assert_close(fast[1], ref[1], 1e-4, "last_state")  # both computed in float32 from the same bf16 values
    for k in ref[2]:
        assert fast[2][k].dtype == torch.bfloat16
        assert_close(fast[2][k], ref[2][k], 3e-2, f"grad {k}")


@pytest.mark.parametrize("softplus,opts", [(True, {}), (False, dict(with_z=False, with_bias=False))])
def test_gradcheck_float64(softplus, opts):
    inputs = make_inputs(2, 3, 5, 2, torch.float64, seed=7, softplus=softplus, **opts)
    keys = [k for k in NAMES if inputs[k] is not None]

    def f(*ts):
        kw = dict(zip(keys, ts))
        out, last = selective_scan_torch(*[kw.get(k) for k in NAMES], delta_softplus=softplus,
                                         return_last_state=True, chunk_size=2)
        return out, last

    assert torch.autograd.gradcheck(f, [inputs[k] for k in keys], eps=1e-6, atol=1e-7)


def test_large_decays_split_chunks_and_stay_finite():
    inputs = make_inputs(2, 3, 24, 4, torch.float32, dt_scale=6.0, seed=5)
    dt = torch.nn.functional.softplus(inputs["delta"] + inputs["delta_bias"][:, None]).detach()
    chunks = plan_chunks(dt, inputs["A"].detach(), 8)
    assert len(chunks) > math.ceil(24 / 8), "spans this large must force smaller chunks"
    assert chunks[0][0] == 0 and chunks[-1][1] == 24
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    with torch.no_grad():  # very large decays: plain chunking would overflow exp(-S*A) into inf/nan
        inputs["delta"] += 40.0
    ref = run(selective_scan_ref, inputs, True, True)
    fast = run(selective_scan_torch, inputs, True, True, chunk_size=8)
    assert_close(fast[0], ref[0], 1e-5, "out")
    for k in ref[2]:
        assert_close(fast[2][k], ref[2][k], 1e-4, f"grad {k}")


def test_saves_only_chunk_boundary_states():
    """Backward memory: the inputs plus (n_chunks, batch, D, N) states, never (batch, D, L, N)."""
    batch, dim, L, N, chunk = 2, 8, 64, 16, 16
    inputs = make_inputs(batch, dim, L, N, dt_scale=0.1)  # small decays: no chunk is split
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = selective_scan_torch(*[inputs[k] for k in NAMES], delta_softplus=True, chunk_size=chunk)
    input_numel = sum(t.numel() for t in inputs.values())
    states = (L // chunk) * batch * dim * N
    assert sum(saved) <= input_numel + states, (sum(saved), input_numel, states)
    assert max(saved) < batch * dim * L * N
    out.sum().backward()


def test_entry_point_uses_torch_path_on_cpu_and_matches():
    inputs = make_inputs(2, 3, 10, 4)
    args = [inputs[k] for k in NAMES]
    a = selective_scan_fn(*args, delta_softplus=True)
    b = selective_scan_ref(*args, delta_softplus=True)
    assert_close(a, b, 1e-5, "out")


def test_batch_tiles_give_the_same_result(monkeypatch):
    """Tiles of one batch row (as at full size) must not change outputs, last state or gradients."""
    import armvision.ops.backends.torch_scan as ss

    inputs = make_inputs(3, 4, 21, 4, seed=11)
    whole = run(selective_scan_torch, inputs, True, True, chunk_size=8)
    monkeypatch.setattr(ss, "TILE_ELEMENTS", 1)
    tiled = run(selective_scan_torch, inputs, True, True, chunk_size=8)
    ref = run(selective_scan_ref, inputs, True, True)
    for got in (whole, tiled):
        assert_close(got[0], ref[0], 1e-5, "out")
        assert_close(got[1], ref[1], 1e-5, "last_state")
        for k in ref[2]:
            assert_close(got[2][k], ref[2][k], 1e-4, f"grad {k}")


@pytest.mark.parametrize("opts", [dict(), dict(Dv=False, z=False, bias=False), dict(softplus=False)])
def test_step_kernels_for_compile_match_vectorised_kernels(opts):
    """The step-by-step chunk kernels (what torch.compile gets) against the vectorised ones, run eagerly."""
    from armvision.ops.backends.torch_scan import chunk_backward, chunk_backward_seq, chunk_forward, chunk_forward_seq

    torch.manual_seed(0)
    b, T, D, N = 2, 7, 5, 3
    u, delta, z, gout = (torch.randn(b, T, D, dtype=torch.float64) for _ in range(4))
    delta = delta * 0.5 if opts.get("softplus", True) else delta.abs() * 0.3
    A = -torch.rand(D, N, dtype=torch.float64) - 0.3
    Bm, Cm = torch.randn(b, T, N, dtype=torch.float64), torch.randn(b, T, N, dtype=torch.float64)
    h0, G = torch.randn(b, D, N, dtype=torch.float64), torch.randn(b, D, N, dtype=torch.float64)
    Dv = torch.randn(D, dtype=torch.float64) if opts.get("Dv", True) else None
    bias = torch.randn(D, dtype=torch.float64) * 0.2 if opts.get("bias", True) else None
    z = z if opts.get("z", True) else None
    sp = opts.get("softplus", True)
    for a, r in zip(chunk_forward_seq(u, delta, A, Bm, Cm, h0, Dv, z, bias, sp),
                    chunk_forward(u, delta, A, Bm, Cm, h0, Dv, z, bias, sp)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)
    got = chunk_backward_seq(u, delta, A, Bm, Cm, h0, Dv, z, bias, sp, gout, G)
    want = chunk_backward(u, delta, A, Bm, Cm, h0, Dv, z, bias, sp, gout, G)
    for a, r in zip(got, want):
        assert (a is None) == (r is None)
        if r is not None:
            torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)
