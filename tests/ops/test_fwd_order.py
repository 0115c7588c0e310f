"""The fused CPU kernel's two loop orders of the mixer's forward (csrc/scan_fwd.c, tile16_fwd: the steps outside,
or the blocks of channels outside with their states in registers), which `cpu_kernel.choose_fwd_order` picks per
machine: the same bits in every output and gradient (the backward starts from the states the forward saved), and
the choice itself: set by ARMVISION_CPU_FWD_ORDER, read from the note beside the library, or timed and noted."""
import pytest
import torch

from armvision import env
from armvision.errors import ConfigError
from armvision.ops import cpu_kernel, selective_scan_directions, selective_scan_fn, selective_scan_ref
from armvision.ops.backends import cpu as cpu_backend

pytestmark = pytest.mark.skipif(cpu_kernel.load() is None, reason="the fused CPU kernel is not built here")


@pytest.fixture
def lib():
    """The loaded library; its order and the loader's record put back afterwards."""
    lib = cpu_kernel.load()
    order, build = lib.armv_fwd_order(), dict(cpu_kernel._state.get("build", {}))
    yield lib
    lib.armv_set_fwd_order(order)
    cpu_kernel._state["build"] = build


def _in_both_orders(lib, fn):
    out = {}
    for order in (0, 1):
        lib.armv_set_fwd_order(order)
        out[order] = fn()
    return out


def _grads(y, leaves):
    weights = torch.linspace(-1, 1, y.numel()).view(y.shape)
    return [y, *torch.autograd.grad((y.float() * weights).sum(), leaves)]


def _directions(dtype, Dg=40, L=150, R=5, seed=0):
    """The mixer's call: 4 directions with an index map, dt_proj inside (fp32) or delta given as a strided view,
    40 channels (two full blocks and a part), 150 steps (three chunks between saved states)."""
    g = torch.Generator().manual_seed(seed)
    G, batch = 4, 2
    xd = (0.5 * torch.randn(G, batch * L, R + 32, generator=g)).to(dtype).requires_grad_()
    u = torch.randn(G, batch, L, Dg, generator=g).to(dtype).requires_grad_()
    W = (0.3 * torch.randn(G, Dg, R, generator=g)).requires_grad_()
    A = (-torch.exp(0.5 * torch.randn(G * Dg, 16, generator=g))).requires_grad_()
    D, bias = torch.randn(G * Dg, generator=g).requires_grad_(), (0.1 * torch.randn(G * Dg, generator=g)).requires_grad_()
    z = torch.randn(batch, L, Dg, generator=g).to(dtype).requires_grad_()
    index = torch.stack([torch.randperm(L, generator=g) for _ in range(G)])
    x, B, C = (xd[..., a:b].view(G, batch, L, b - a) for a, b in ((0, R), (R, R + 16), (R + 16, R + 32)))

    def run():
        y = selective_scan_directions(u, x, A, B, C, D, z, bias, index, scale=0.25, backend="cpu", dt_weight=W)
        return _grads(y, [u, xd, W, A, D, bias, z])
    return run


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_directions_same_bits_in_both_orders(lib, dtype):
    got = _in_both_orders(lib, _directions(dtype))
    for i, (a, b) in enumerate(zip(got[0], got[1])):
        assert torch.equal(a, b), f"output / gradient {i} differs between the loop orders"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_apart_same_bits_in_both_orders_and_right(lib, dtype):
    """mamba_ssm's (batch, D, L) layout: u and delta staged block-major for the blocks order; the last state too;
    and each order against the float64 reference."""
    g = torch.Generator().manual_seed(1)
    batch, dim, L = 2, 37, 130
    leaves = dict(u=torch.randn(batch, dim, L, generator=g).to(dtype), delta=(0.5 * torch.rand(batch, dim, L, generator=g)).to(dtype),
                  A=-0.5 - torch.rand(dim, 16, generator=g), B=torch.randn(batch, 16, L, generator=g).to(dtype),
                  C=torch.randn(batch, 16, L, generator=g).to(dtype), D=torch.randn(dim, generator=g),
                  z=torch.randn(batch, dim, L, generator=g).to(dtype), delta_bias=0.5 * torch.rand(dim, generator=g))
    leaves = {k: v.requires_grad_() for k, v in leaves.items()}

    def run(backend="cpu"):
        y, last = selective_scan_fn(**leaves, delta_softplus=True, return_last_state=True, backend=backend)
        return [last.detach()] + _grads(y, list(leaves.values()))
    got = _in_both_orders(lib, run)
    for i, (a, b) in enumerate(zip(got[0], got[1])):
        assert torch.equal(a, b), f"result {i} differs between the loop orders"
    with torch.no_grad():
        want = selective_scan_ref(**{k: v.double() for k, v in leaves.items()}, delta_softplus=True)
    tol = 2e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got[1][1].double(), want, rtol=tol, atol=tol)


def test_the_cpu_room_registers_the_timer():
    assert cpu_kernel.fwd_order_timer is cpu_backend.time_fwd_orders


def test_without_a_timer_the_steps_order_and_no_note(lib, monkeypatch, tmp_path):
    monkeypatch.delenv(env.CPU_FWD_ORDER, raising=False)
    cpu_kernel._state["build"] = {"path": str(tmp_path / "lib.so")}
    monkeypatch.setattr(cpu_kernel, "fwd_order_timer", None)
    assert cpu_kernel.choose_fwd_order(lib) == "steps" and lib.armv_fwd_order() == 0
    assert not (tmp_path / "lib.fwd-order").exists()


def test_order_set_by_the_environment(lib, monkeypatch, tmp_path):
    cpu_kernel._state["build"] = {"path": str(tmp_path / "lib.so")}
    monkeypatch.setattr(cpu_kernel, "fwd_order_timer", lambda lib: pytest.fail("timed although the order was set"))
    for name, code in (("blocks", 1), ("steps", 0)):
        monkeypatch.setenv(env.CPU_FWD_ORDER, name)
        assert cpu_kernel.choose_fwd_order(lib) == name and lib.armv_fwd_order() == code
        assert cpu_kernel._state["build"]["fwd_order_how"] == "set by ARMVISION_CPU_FWD_ORDER"
    monkeypatch.setenv(env.CPU_FWD_ORDER, "sideways")
    with pytest.raises(ConfigError, match="ARMVISION_CPU_FWD_ORDER is 'sideways'; choose one of auto, steps, blocks"):
        cpu_kernel.choose_fwd_order(lib)
    assert not (tmp_path / "lib.fwd-order").exists()


def test_auto_times_once_then_reads_the_note(lib, monkeypatch, tmp_path):
    monkeypatch.delenv(env.CPU_FWD_ORDER, raising=False)
    cpu_kernel._state["build"] = {"path": str(tmp_path / "lib.so")}
    note = tmp_path / "lib.fwd-order"
    monkeypatch.setattr(cpu_kernel, "fwd_order_timer", lambda lib: 0.9)
    assert cpu_kernel.choose_fwd_order(lib) == "blocks" and lib.armv_fwd_order() == 1
    assert note.read_text() == "blocks 0.900\n"
    monkeypatch.setattr(cpu_kernel, "fwd_order_timer", lambda lib: pytest.fail("timed again"))
    note.write_text("steps 1.010\n")
    assert cpu_kernel.choose_fwd_order(lib) == "steps" and lib.armv_fwd_order() == 0
    assert cpu_kernel._state["build"]["fwd_order_how"] == "stored in lib.fwd-order"
    # a note that does not say a known order is timed again and replaced; under the margin's edge: the default
    note.write_text("banana")
    monkeypatch.setattr(cpu_kernel, "fwd_order_timer", lambda lib: 0.98)
    assert cpu_kernel.choose_fwd_order(lib) == "steps" and note.read_text() == "steps 0.980\n"


def test_timing_runs_both_orders_on_one_thread_and_leaves_the_threads(lib, monkeypatch):
    threads, seen = torch.get_num_threads(), []
    monkeypatch.setattr(lib, "armv_set_fwd_order", lambda order: seen.append((order, cpu_kernel.threads())))
    ratio = cpu_backend.time_fwd_orders(lib, rounds=2)
    assert 0.2 < ratio < 5 and sorted(seen) == [(0, 1)] * 3 + [(1, 1)] * 3
    assert torch.get_num_threads() == threads and cpu_kernel.threads() == max(1, threads)
