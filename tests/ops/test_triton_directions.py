"""The multi-direction Triton scan (armvision.ops.backends.triton_directions: every direction in one launch) on CPU
tensors through Triton's interpreter, against (a) the CPU kernel's multi-direction scan and (b) a plain reference
built from `selective_scan_ref` one direction at a time (z gathered into the direction's scan order, scanned,
scattered back to raster order, summed). Values and all eight gradients, G in {1, 2, 4}, with and without an index
map, odd lengths (1, 13, 70: the last crosses the default 64-step chunk), Dg = 10 over blocks of 8 channels (a
ragged last block); then `selective_scan_directions(backend="triton")` (and ARMVISION_SCAN_BACKEND=triton as its
default) through the custom op, its fake impls (opcheck), and a 4-direction MambaMixer(scan_backend="triton")
against backend "torch", eager and under torch.compile (aot_eager, full graph).

As in test_triton_scan.py, TRITON_INTERPRET must be set before triton is imported, so the checks run in one
fresh subprocess (this file run as a script) that prints one JSON line: check name -> "ok" or the failure.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from armvision.ops import custom_ops, selective_scan_directions
from armvision.ops.backends import triton_directions as td, triton_scan

pytestmark = pytest.mark.skipif(not triton_scan.triton_importable(), reason="triton is not installed")

MAX_BLOCK_D = 8
SRC = Path(triton_scan.__file__).resolve().parents[3]

# (name, G, batch, L, with index, chunk or None for the default, dtype)
CASES = [
    ("g1_L13", 1, 2, 13, False, 5, "float32"),
    ("g1_L70", 1, 1, 70, False, None, "float32"),
    ("g2_L1_idx", 2, 2, 1, True, None, "float32"),
    ("g2_L13", 2, 2, 13, False, 4, "float32"),
    ("g4_L13_idx", 4, 2, 13, True, 5, "float32"),
    ("g4_L7", 4, 1, 7, False, None, "float32"),
    ("g2_L70_idx", 2, 1, 70, True, None, "float32"),
    ("g2_L13_idx_bf16", 2, 2, 13, True, 5, "bfloat16"),
]
GRADS = ("du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias")
PROPERTIES = ("deterministic", "chunk_invariant", "absent_inputs", "dispatch_custom_op", "opcheck",
              "mixer_4_directions", "compile_mixer")


def _interp_env() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("ARMVISION_SCAN_BACKEND", None)
    return env


@pytest.fixture(scope="module")
def results() -> dict:
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--interpreter-checks"], env=_interp_env(),
                       capture_output=True, text=True, timeout=900)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no results (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_values_and_gradients(results, name):
    assert results.get(name) == "ok", results.get(name)


@pytest.mark.parametrize("name", PROPERTIES)
def test_properties(results, name):
    assert results.get(name) == "ok", results.get(name)


def test_cases_cover_the_spec():
    assert {c[1] for c in CASES} == {1, 2, 4} and {1, 13, 70} <= {c[3] for c in CASES}
    assert {True, False} == {c[4] for c in CASES}
    assert any(c[5] is None and c[3] > triton_scan.DEFAULT_CHUNK for c in CASES)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_mixer_shape_matches_reference(results, dtype):
    """The mixer's shape (4 directions with an index map, N 16, 40 channels, L 197: the default chunk crossed) at the
    kernels' own block size, as a GPU runs them: compiled on CUDA where there is one, else through the interpreter
    (the subprocess's entry `mixer_shape_<dtype>`)."""
    if torch.cuda.is_available():
        _mixer_shape(dtype, "cuda")
    else:
        assert results.get(f"mixer_shape_{dtype}") == "ok", results.get(f"mixer_shape_{dtype}")


# ----------------------------------------------------------------------------------------------------------------
# Run as a script (in a subprocess with TRITON_INTERPRET=1)
# ----------------------------------------------------------------------------------------------------------------
def _inputs(G, batch, L, Dg=10, N=4, index=True, dtype=torch.float32, seed=0):
    """u, delta (G, batch, L, Dg) and B, C (G, batch, L, N) as the mixer makes them (B, C slices of one tensor;
    u a non-contiguous view with contiguous channels); z (batch, L, Dg) a slice of a wider tensor."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(G, batch, L, Dg + 3, generator=g)[..., 1:Dg + 1]
    delta = 0.5 * torch.randn(G, batch, L, Dg, generator=g)
    A = -(0.1 + torch.rand(G * Dg, N, generator=g))
    x_dbl = torch.randn(G, batch, L, 2 * N + 2, generator=g)
    B, C = x_dbl[..., 2:2 + N], x_dbl[..., 2 + N:]
    D = torch.randn(G * Dg, generator=g)
    z = torch.randn(batch, L, 2 * Dg, generator=g)[..., Dg:]
    bias = 0.3 * torch.randn(G * Dg, generator=g)
    idx = torch.stack([torch.randperm(L, generator=g) for _ in range(G)]).to(torch.int32) if index else None
    ts = [t.to(dtype) if k in (0, 1, 3, 4, 6) else t for k, t in enumerate((u, delta, A, B, C, D, z, bias))]
    return ts, idx


def _plain_ref(u, delta, A, B, C, D, z, bias, index):
    """Per direction: z gathered into its scan order, selective_scan_ref, scattered back, summed; float32."""
    from armvision.ops import selective_scan_ref

    G, batch, L, Dg = u.shape
    out = torch.zeros(batch, L, Dg)
    for g in range(G):
        sl = slice(g * Dg, (g + 1) * Dg)
        pos = torch.arange(L) if index is None else index[g].long()
        zg = None if z is None else z.float()[:, pos]  # (batch, L, Dg) in scan order
        y = selective_scan_ref(u[g].float().transpose(1, 2), delta[g].float().transpose(1, 2), A[sl],
                               B[g].float().transpose(1, 2), C[g].float().transpose(1, 2),
                               None if D is None else D[sl], None if zg is None else zg.transpose(1, 2),
                               None if bias is None else bias[sl], delta_softplus=True)
        out = out.index_add(1, pos, y.transpose(1, 2))
    return out


def _grads(fn, inputs, dout):
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    live = [t for t in leaves if t is not None]
    gs = iter(torch.autograd.grad(out, live, dout.to(out.dtype)))
    return out.detach(), [None if t is None else next(gs) for t in leaves]


def _close(name, got, want, tol):
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = (got.float() - want.float()).abs().max().item() / max(want.float().abs().max().item(), 1e-6)
    assert err <= tol, f"{name}: relative max error {err:.2e} > {tol:.0e}"


def _case(G, batch, L, with_index, chunk, dtype):
    dt = getattr(torch, dtype)
    args, idx = _inputs(G, batch, L, index=with_index, dtype=dt, seed=G * 100 + L)
    kw = {} if chunk is None else {"chunk": chunk}
    out, saved = td.triton_directions_fwd(*args, idx, **kw)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dt)
    grads = td.triton_directions_bwd(*args, idx, saved, dout, **kw)
    assert out.dtype == dt and saved.dtype == torch.float32
    for gx, x, n in zip(grads, args, GRADS):
        assert gx.shape == x.shape and gx.dtype == x.dtype, (n, gx.shape, gx.dtype, x.shape, x.dtype)
    # (b) the plain reference, float32, on the same (rounded) inputs
    f32 = [t.float() for t in args]
    ref_out, ref_grads = _grads(lambda *a: _plain_ref(*a, idx), f32, dout.float())
    tol = 1e-4 if dt == torch.float32 else 3e-2
    _close("out vs ref", out, ref_out, tol)
    for n, gx, gr in zip(GRADS, grads, ref_grads):
        _close(f"{n} vs ref", gx, gr, tol)
    # (a) the CPU kernel (float32)
    if dt == torch.float32:
        cpu_out, cpu_grads = _grads(lambda *a: selective_scan_directions(*a, idx, backend="cpu"), f32, dout)
        _close("out vs cpu", out, cpu_out, 1e-4)
        for n, gx, gr in zip(GRADS, grads, cpu_grads):
            _close(f"{n} vs cpu", gx, gr, 1e-4)


def _mixer_shape(dtype: str, device: str) -> None:
    """Every direction in one launch on `device`, against the plain float32 reference."""
    dt = getattr(torch, dtype)
    args, idx = _inputs(4, 2, 197, Dg=40, N=16, dtype=dt, seed=3)
    dout = torch.randn(2, 197, 40, generator=torch.Generator().manual_seed(1)).to(dt)
    on = [t.to(device) for t in args]
    out, saved = td.triton_directions_fwd(*on, idx.to(device))
    grads = td.triton_directions_bwd(*on, idx.to(device), saved, dout.to(device))
    ref_out, ref_grads = _grads(lambda *a: _plain_ref(*a, idx), [t.float() for t in args], dout.float())
    tol = 1e-4 if dt == torch.float32 else 3e-2
    _close("out", out.cpu(), ref_out, tol)
    for n, gx, gr in zip(GRADS, grads, ref_grads):
        _close(n, gx.cpu(), gr, tol)


def _fixture() -> dict:
    """The properties' shared inputs (G = 2, L = 13, index map) and their outputs and gradients, chunks 5 and 64."""
    args, idx = _inputs(2, 1, 13, seed=7)
    dout = torch.randn(1, 13, 10, generator=torch.Generator().manual_seed(2))
    o5, s5 = td.triton_directions_fwd(*args, idx, chunk=5)
    g5 = td.triton_directions_bwd(*args, idx, s5, dout, chunk=5)
    o64, s64 = td.triton_directions_fwd(*args, idx)
    g64 = td.triton_directions_bwd(*args, idx, s64, dout)
    return dict(args=args, idx=idx, dout=dout, o5=o5, s5=s5, g5=g5, o64=o64, s64=s64, g64=g64)


def _deterministic(args, idx, dout, o5, s5, g5, **_rest) -> None:
    o2, s2 = td.triton_directions_fwd(*args, idx, chunk=5)
    assert torch.equal(o5, o2) and torch.equal(s5, s2)
    for a, b in zip(g5, td.triton_directions_bwd(*args, idx, s2, dout, chunk=5)):
        assert torch.equal(a, b)


def _chunk_invariant(o5, s5, g5, o64, s64, g64, **_rest) -> None:
    assert s5.shape == (3, 1, 20, 4) and s64.shape == (1, 1, 20, 4)
    assert torch.equal(s5[0], torch.zeros_like(s5[0]))
    torch.testing.assert_close(o5, o64, rtol=1e-5, atol=1e-5)
    for a, b in zip(g5, g64):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _absent_inputs(**_rest) -> None:
    """D, z, delta_bias None: no skip, no gate, no bias."""
    a2, i2 = _inputs(2, 1, 6, seed=3)
    u, delta, A, B, C, _, _, _ = a2
    bare = [u, delta, A, B, C, None, None, None]
    out, saved = td.triton_directions_fwd(*bare, i2, chunk=4)
    d2 = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    grads = td.triton_directions_bwd(*bare, i2, saved, d2, chunk=4)
    assert [g is None for g in grads] == [False] * 5 + [True] * 3
    ref_out, ref_grads = _grads(lambda *a: _plain_ref(*a, None, None, None, i2), bare[:5], d2)
    _close("out", out, ref_out, 1e-4)
    for n, gx, gr in zip(GRADS, grads, ref_grads):
        _close(n, gx, gr, 1e-4)


def _dispatch_custom_op(args, idx, dout, o64, g64, **_rest) -> None:
    """selective_scan_directions on CPU tensors with backend "triton" (argument, or the environment's default):
    the one-launch kernel through the custom op, the same bits as calling it directly."""
    from armvision.ops.resolve import runs_directions

    assert runs_directions("triton", on_cuda=False)
    out, grads = _grads(lambda *a: selective_scan_directions(*a, idx, backend="triton"), args, dout)
    os.environ["ARMVISION_SCAN_BACKEND"] = "triton"
    try:
        out_env, _ = _grads(lambda *a: selective_scan_directions(*a, idx), args, dout)
    finally:
        del os.environ["ARMVISION_SCAN_BACKEND"]
    assert torch.equal(out, o64) and torch.equal(out_env, o64)
    for n, gx, gw in zip(GRADS, grads, g64):
        assert torch.equal(gx, gw), n


def _opcheck(**_rest) -> None:
    """Schema, fake impl (shapes, strides), autograd registration."""
    a3, i3 = _inputs(2, 1, 3, Dg=4, N=2, seed=5)
    leaves = [t.detach().clone().requires_grad_() for t in a3]
    torch.library.opcheck(custom_ops.selective_scan_directions_fwd, (*leaves, i3, 1.0, True, "triton"),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    out, saved = custom_ops.selective_scan_directions_fwd(*a3, i3, 1.0, True, "triton")
    torch.library.opcheck(custom_ops.selective_scan_directions_bwd,
                          (*a3, i3, 1.0, "triton", saved, torch.ones_like(out)),
                          test_utils=("test_schema", "test_faketensor"))


def _mixer_4_directions(**_rest) -> None:
    from armvision.nn.mamba import MambaMixer

    torch.manual_seed(0)
    m = MambaMixer(10, d_state=4, d_conv=3, directions=4)
    x = torch.randn(1, 10, 10, generator=torch.Generator().manual_seed(6))  # 3 x 3 grid + cls at index 4
    got = {}
    for backend in ("triton", "torch"):
        m.scan_backend = backend
        m.zero_grad()
        xi = x.clone().requires_grad_()
        y = m(xi, hw=(3, 3), cls_index=4)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        got[backend] = [y.detach(), xi.grad] + [p.grad.clone() for _, p in m.named_parameters()]
    names = ["out", "dx"] + [n for n, _ in m.named_parameters()]
    for n, a, b in zip(names, got["triton"], got["torch"]):
        _close(n, a, b, 1e-4)


def _compile_mixer(**_rest) -> None:
    """torch.compile traces the mixer's Triton path through the fake impls, whole graph."""
    from armvision.nn.mamba import MambaMixer

    torch.manual_seed(0)
    m = MambaMixer(10, d_state=4, d_conv=3, directions=4, scan_backend="triton")
    x = torch.randn(1, 10, 10, generator=torch.Generator().manual_seed(8))
    want = m(x, hw=(3, 3), cls_index=4)
    xi = x.clone().requires_grad_()
    got = torch.compile(m, backend="aot_eager", fullgraph=True)(xi, hw=(3, 3), cls_index=4)
    got.sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert xi.grad is not None and torch.isfinite(xi.grad).all()


_PROPERTIES = (_deterministic, _chunk_invariant, _absent_inputs, _dispatch_custom_op, _opcheck, _mixer_4_directions,
               _compile_mixer)


def _record(res: dict, name: str, fn) -> None:
    """Runs one check: res[name] = "ok" or the failure (reported, not raised: every check runs)."""
    t = time.time()
    try:
        fn()
        res[name] = "ok"
    except Exception as e:
        res[name] = f"{type(e).__name__}: {e}"
    print(f"# {name}: {res[name]} ({time.time() - t:.1f} s)", file=sys.stderr, flush=True)


def _main() -> None:
    assert triton_scan.interpreter_enabled(), "TRITON_INTERPRET=1 must be set before triton is imported"
    res = {}
    for dtype in ("float32", "bfloat16"):  # at the kernels' own block size, before it is lowered below
        _record(res, f"mixer_shape_{dtype}", lambda dtype=dtype: _mixer_shape(dtype, "cpu"))
    triton_scan.MAX_BLOCK_D = MAX_BLOCK_D
    for name, *case in CASES:
        _record(res, name, lambda case=case: _case(*case))
    t = time.time()
    fx = _fixture()
    for fn in _PROPERTIES:
        _record(res, fn.__name__.lstrip("_"), lambda fn=fn: fn(**fx))
    print(f"# properties ({time.time() - t:.1f} s)", file=sys.stderr, flush=True)
    print(json.dumps(res), flush=True)


if __name__ == "__main__" and "--interpreter-checks" in sys.argv:
    _main()
