"""The Triton selective scan (armvision.ops.backends.triton_scan) against the sequential reference, on CPU tensors through
Triton's interpreter (TRITON_INTERPRET=1), and on CUDA when there is one.

TRITON_INTERPRET must be set before triton is first imported in a process (triton decorates its own library
functions, e.g. tl.zeros, at import; decorated without the variable they cannot run inside an interpreted
kernel), and torch or armvision may already have imported triton by the time this module is collected. Setting
it in the pytest process would also make every Triton kernel of the rest of the suite (torch.compile on a GPU)
interpreted. So the interpreter checks run in one fresh subprocess whose environment sets it (this file run as
a script): `armvision.bench.scan_check` over all cases and dtypes (values and all gradients, every B/C form, odd
lengths, chunk boundaries crossed, several channel blocks with a ragged last one), then the properties that are
not comparisons with the reference (checkpoints, determinism, chunk-size invariance, dtypes, absent inputs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from armvision.bench import scan_check
from armvision.bench.scan_check import ARG_NAMES, Case, make_inputs
from armvision.ops import selective_scan_ref
from armvision.ops.backends import triton_scan

pytestmark = pytest.mark.skipif(not triton_scan.triton_importable(), reason="triton is not installed")

MAX_BLOCK_D = 8  # several channel blocks (and a ragged last one) on the tiny shapes
SRC = Path(triton_scan.__file__).resolve().parents[3]


def _interp_env() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("ARMVISION_SCAN_BACKEND", None)
    return env


def _run(argv: list, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], env=_interp_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def interpreter_results() -> dict:
    """One subprocess: scan_check over all cases and dtypes, then the properties (last line)."""
    p = _run([str(Path(__file__).resolve()), "--interpreter-checks"])
    rows, props = {}, None
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if "case" in r:
                rows[(r["case"], r["dtype"])] = r
            else:
                props = r
    assert rows and props is not None, f"no results (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return {"rows": rows, "properties": props}


_PAIRS = [(c.name, "float32") for c in scan_check.CASES] + [
    (name, dt) for name in scan_check.HALF_CASES for dt in ("float16", "bfloat16")]


@pytest.mark.parametrize("case,dtype", _PAIRS, ids=[f"{c}-{d}" for c, d in _PAIRS])
def test_matches_reference_values_and_gradients(interpreter_results, case, dtype):
    r = interpreter_results["rows"].get((case, dtype))
    assert r is not None, f"no result for {case}/{dtype}"
    assert r["ok"], f"{case} ({dtype}): {r['message']}"
    if dtype == "float32":  # all of out, last_state (when returned) and every gradient were compared
        c = next(c for c in scan_check.CASES if c.name == case)
        want = {"out", "du", "ddelta", "dA", "dB", "dC"}
        for name, present in (("last_state", c.last_state), ("dD", c.has_D), ("dz", c.has_z),
                              ("ddelta_bias", c.has_bias)):
            want |= {name} if present else set()
        assert set(r["errors"]) == want


def test_cases_cover_the_spec():
    cases = scan_check.CASES
    forms = {c.b_form.rstrip("0123456789") for c in cases} | {c.c_form.rstrip("0123456789") for c in cases}
    assert forms == {"const", "shared", "groups"}
    assert {1, 7, 33, 372} <= {c.L for c in cases}
    assert {1, 4, 16} <= {c.N for c in cases}
    assert any(c.dim % MAX_BLOCK_D for c in cases) and any(c.layout == "strided" for c in cases)
    assert any(c.chunk is not None and c.L > c.chunk for c in cases)
    assert not all(c.softplus for c in cases) and not all(c.has_z for c in cases)


def test_interpreter_properties(interpreter_results):
    results = interpreter_results["properties"]
    bad = {k: v for k, v in results.items() if v != "ok"}
    assert not bad, bad
    assert len(results) >= 10


def test_module_imports_without_triton(monkeypatch):
    """triton_scan imports triton only when a kernel runs: loaded where triton cannot be imported, it reports
    it is unavailable instead of failing."""
    import importlib.util

    for name in ("triton", "triton.language", "triton.runtime.jit"):
        monkeypatch.setitem(sys.modules, name, None)  # `import triton` now raises ImportError
    spec = importlib.util.spec_from_file_location("_triton_scan_probe", triton_scan.__file__)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert not probe.triton_importable() and not probe.triton_available()
    assert not probe.triton_available(torch.device("cpu")) and not probe.interpreter_enabled()


LATE_INTERPRETER = """
import os, torch, triton  # imported without TRITON_INTERPRET, as in a normal run
from armvision.ops.backends import triton_scan
os.environ["TRITON_INTERPRET"] = "1"  # too late: triton's library functions are compiled-mode
assert triton_scan.interpreter_requested() and not triton_scan.interpreter_enabled()
assert not triton_scan.triton_available(torch.device("cpu"))
print("OK")
"""


def test_interpreter_needs_the_variable_before_triton_is_imported():
    """In a fresh interpreter without TRITON_INTERPRET (this pytest process may have been started with it)."""
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    p = subprocess.run([sys.executable, "-c", LATE_INTERPRETER], env=environ, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "OK", p.stderr[-2000:]


def _own_block_rows(device: str) -> list:
    """scan_check's cases (but the long L372) in float32, and bfloat16 on its half cases, at the kernel's own block
    size (the interpreter checks above lower it to get several channel blocks)."""
    cases = [c for c in scan_check.CASES if c.name != "L372"]
    return scan_check.run_checks(triton_scan.selective_scan_triton, device, (torch.float32, torch.bfloat16), cases,
                                 takes_chunk=True)


def test_matches_reference_at_its_own_block_size():
    """As a GPU runs the kernel: compiled on CUDA where there is one, else through the interpreter (a subprocess)."""
    if torch.cuda.is_available():
        rows = _own_block_rows("cuda")
    else:
        p = _run([str(Path(__file__).resolve()), "--own-block-checks"])
        rows = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
        assert rows, f"no results (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert len(rows) == len(scan_check.CASES) - 1 + len(scan_check.HALF_CASES)
    bad = [f"{r['case']}/{r['dtype']}: {r['message']}" for r in rows if not r["ok"]]
    assert not bad, bad


# ----------------------------------------------------------------------------------------------------------------
# Run as a script (in a subprocess with TRITON_INTERPRET=1): properties other than agreement with the reference.
# ----------------------------------------------------------------------------------------------------------------
def _slice_t(x, t):
    return None if x is None else (x[..., :t] if x.dim() >= 3 else x)


def _fixture() -> dict:
    """The properties' shared inputs: one case, its forward with chunk 5, and cotangents of out and last_state."""
    case = Case("p", dim=8, L=13, b_form="shared", c_form="groups2")
    inp = make_inputs(case)
    args = [None if inp[k] is None else inp[k].detach() for k in ARG_NAMES]
    out, last, ck = triton_scan.triton_scan_fwd(*args, True, chunk=5)
    g = torch.Generator().manual_seed(5)
    dout = torch.randn(out.shape, generator=g)
    dlast = torch.randn(last.shape, generator=g)
    return dict(case=case, inp=inp, args=args, out=out, last=last, ck=ck, dout=dout, dlast=dlast)


def _checkpoints(args, last, ck, **_rest) -> None:
    assert ck.shape == (3, 2, 8, 4) and ck.dtype == torch.float32
    assert torch.equal(ck[0], torch.zeros_like(ck[0]))
    for c in (1, 2):
        sl = [_slice_t(a, 5 * c) for a in args]
        _, state = selective_scan_ref(*sl, delta_softplus=True, return_last_state=True)
        torch.testing.assert_close(ck[c], state, rtol=1e-5, atol=1e-5)
    _, state = selective_scan_ref(*args, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(last, state, rtol=1e-5, atol=1e-5)


def _deterministic(args, out, last, ck, dout, dlast, **_rest) -> None:
    a = triton_scan.triton_scan_bwd(*args, True, ck, dout, dlast, chunk=5)
    b = triton_scan.triton_scan_bwd(*args, True, ck, dout, dlast, chunk=5)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    o2, l2, c2 = triton_scan.triton_scan_fwd(*args, True, chunk=5)
    assert torch.equal(o2, out) and torch.equal(l2, last) and torch.equal(c2, ck)


def _chunk_invariant(args, out, ck, dout, dlast, **_rest) -> None:
    a = triton_scan.triton_scan_bwd(*args, True, ck, dout, dlast, chunk=5)
    for chunk in (64,):
        o, l, c = triton_scan.triton_scan_fwd(*args, True, chunk=chunk)
        assert c.shape[0] == 1
        torch.testing.assert_close(o, out, rtol=1e-5, atol=1e-5)
        b = triton_scan.triton_scan_bwd(*args, True, c, dout, dlast, chunk=chunk)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def _dlast_none_is_zero(args, last, ck, dout, **_rest) -> None:
    a = triton_scan.triton_scan_bwd(*args, True, ck, dout, None, chunk=5)
    b = triton_scan.triton_scan_bwd(*args, True, ck, dout, torch.zeros_like(last), chunk=5)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def _grad_forms_and_dtypes(args, ck, dout, dlast, **_rest) -> None:
    du, ddelta, dA, dB, dC, dD, dz, ddb = triton_scan.triton_scan_bwd(*args, True, ck, dout, dlast, chunk=5)
    u, delta, A, B, C, D, z, bias = args
    for gx, x in ((du, u), (ddelta, delta), (dA, A), (dB, B), (dC, C), (dD, D), (dz, z), (ddb, bias)):
        assert gx.shape == x.shape and gx.dtype == x.dtype, (gx.shape, x.shape)


def _absent_inputs_give_none(**_rest) -> None:
    c2 = Case("bare", dim=9, L=6, b_form="const", c_form="groups3", has_D=False, has_z=False, has_bias=False,
              softplus=False)
    i2 = make_inputs(c2)
    a2 = [None if i2[k] is None else i2[k].detach() for k in ARG_NAMES]
    o, l, c = triton_scan.triton_scan_fwd(*a2, False, chunk=4)
    grads = triton_scan.triton_scan_bwd(*a2, False, c, torch.ones_like(o), None, chunk=4)
    names = ("du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias")
    got = {n for n, x in zip(names, grads) if x is None}
    assert got == {"dD", "dz", "ddelta_bias"}, got
    assert grads[3].shape == (9, 4) and grads[4].shape == (2, 3, 4, 6)


def _half_dtypes(case, **_rest) -> None:
    for dt in (torch.bfloat16,):
        h = make_inputs(case, dtype=dt)
        ha = [None if h[k] is None else h[k].detach() for k in ARG_NAMES]
        o, l, c = triton_scan.triton_scan_fwd(*ha, True, chunk=5)
        assert o.dtype == dt and l.dtype == torch.float32 and c.dtype == torch.float32
        grads = triton_scan.triton_scan_bwd(*ha, True, c, torch.ones_like(o), None, chunk=5)
        du, ddelta, dA, dB, dC, dD, dz, ddb = grads
        assert du.dtype == ddelta.dtype == dB.dtype == dC.dtype == dz.dtype == dt
        assert dA.dtype == dD.dtype == ddb.dtype == torch.float32


def _autograd_function(inp, args, out, last, ck, dout, **_rest) -> None:
    la = [None if inp[k] is None else inp[k].detach().clone().requires_grad_() for k in ARG_NAMES]
    o, l = triton_scan.selective_scan_triton(*la, delta_softplus=True, return_last_state=True, chunk=5)
    torch.testing.assert_close(o, out)
    torch.testing.assert_close(l, last)
    (o * dout).sum().backward(retain_graph=True)
    want = triton_scan.triton_scan_bwd(*args, True, ck, dout, None, chunk=5)
    for x, y in zip(la, want):
        torch.testing.assert_close(x.grad, y)
    only = triton_scan.selective_scan_triton(*la, delta_softplus=True)
    assert isinstance(only, torch.Tensor) and only.shape == out.shape
    l.sum().backward()  # only the last state used: dout is zeros


def _empty_shapes(**_rest) -> None:  # nothing to launch: outputs and gradients from the reference's definition
    for b, d, L, N in ((0, 4, 5, 3), (2, 0, 5, 3), (2, 4, 5, 0)):
        t = [torch.randn(b, d, L), torch.rand(b, d, L), -torch.rand(d, N), torch.randn(b, N, L),
             torch.randn(b, N, L), torch.randn(d), torch.randn(b, d, L), None]
        o, l, c = triton_scan.triton_scan_fwd(*t, True)
        torch.testing.assert_close(o, selective_scan_ref(*t, delta_softplus=True))
        assert l.shape == (b, d, N) and c.shape == (1, b, d, N)
        grads = triton_scan.triton_scan_bwd(*t, True, c, torch.ones_like(o), None)
        for gx, x in zip(grads, t):
            assert (gx is None) == (x is None) and (x is None or gx.shape == x.shape)


def _interpreter_flags(**_rest) -> None:
    assert triton_scan.interpreter_enabled() and triton_scan.triton_available()
    assert triton_scan.triton_available(torch.device("cpu"))


_PROPERTIES = (_checkpoints, _deterministic, _chunk_invariant, _dlast_none_is_zero, _grad_forms_and_dtypes,
               _absent_inputs_give_none, _half_dtypes, _autograd_function, _empty_shapes, _interpreter_flags)


def _properties() -> dict:
    """Every property's result: "ok" or its error (reported, not raised: every property gets checked)."""
    triton_scan.MAX_BLOCK_D = MAX_BLOCK_D
    fx = _fixture()
    res = {}
    for fn in _PROPERTIES:
        try:
            fn(**fx)
            res[fn.__name__.lstrip("_")] = "ok"
        except Exception as e:
            res[fn.__name__.lstrip("_")] = f"{type(e).__name__}: {e}"
    return res


if __name__ == "__main__" and "--own-block-checks" in sys.argv:
    assert triton_scan.interpreter_enabled(), "TRITON_INTERPRET=1 must be set before triton is imported"
    for row in _own_block_rows("cpu"):
        print(json.dumps(row), flush=True)

if __name__ == "__main__" and "--interpreter-checks" in sys.argv:
    scan_check.check_backend("triton", "cpu", ("float32", "float16", "bfloat16"), max_block_d=MAX_BLOCK_D,
                             as_json=True)
    print(json.dumps(_properties()), flush=True)
