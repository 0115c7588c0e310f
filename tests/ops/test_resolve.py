"""Backend choice (argument, env var, auto) and input validation of the public entry points; which backends run the
mixer's directions in one call."""
import pytest
import torch

from armvision import env
from armvision.errors import ConfigError
from armvision.ops import api, available_backends, causal_conv1d_fn, resolve_backend, selective_scan_fn
from armvision.ops.backends import room
from armvision.ops.resolve import runs_directions

cpu_room, cuda_room, torch_room, triton_room = room("cpu"), room("cuda"), room("torch"), room("triton")


def scan_inputs(batch=2, dim=3, L=8, N=4):
    torch.manual_seed(0)
    return (torch.randn(batch, dim, L), torch.rand(batch, dim, L), -torch.rand(dim, N) - 0.5,
            torch.randn(batch, N, L), torch.randn(batch, N, L))


@pytest.fixture(autouse=True)
def no_env_default(monkeypatch):
    for name in env.NAMES:
        if name != env.CACHE:
            monkeypatch.delenv(name, raising=False)


def test_auto_picks_cpu_kernel_on_cpu():
    assert resolve_backend("selective_scan", None, on_cuda=False) == "cpu"
    assert resolve_backend("selective_scan", "auto", on_cuda=False, dtype=torch.bfloat16) == "cpu"
    assert resolve_backend("selective_scan", None, on_cuda=False, dtype=torch.float64) == "torch"  # exact path
    assert resolve_backend("selective_scan", "cpu", on_cuda=False, dtype=torch.float64) == "torch"
    assert resolve_backend("causal_conv1d", None, on_cuda=False) == "torch"
    assert available_backends()[:3] == ["ref", "torch", "cpu"]


def test_state_sizes_over_the_kernels_maximum():
    """auto falls back to torch; an explicit cpu (argument or environment) is an error naming the limit."""
    assert resolve_backend("selective_scan", None, on_cuda=False, state_size=65) == "torch"
    assert resolve_backend("selective_scan", None, on_cuda=False, state_size=64) == "cpu"
    with pytest.raises(ConfigError, match="N <= 64, got N=65"):
        resolve_backend("selective_scan", "cpu", on_cuda=False, state_size=65)


def test_auto_falls_back_to_torch_without_the_cpu_kernel(monkeypatch):
    monkeypatch.setattr(cpu_room, "unavailable_reason", lambda: "no C compiler found")
    assert resolve_backend("selective_scan", None, on_cuda=False) == "torch"
    with pytest.raises(ConfigError, match="backend 'cpu'.*unavailable: no C compiler found"):
        resolve_backend("selective_scan", "cpu", on_cuda=False)


def test_auto_on_cuda_prefers_mamba_then_triton_then_torch(monkeypatch):
    monkeypatch.setitem(cuda_room._cache, "selective_scan", lambda *a, **k: None)
    monkeypatch.setattr(triton_room, "unavailable_reason", lambda on_cuda: None)
    assert resolve_backend("selective_scan", None, on_cuda=True) == "cuda"
    assert resolve_backend("selective_scan", None, on_cuda=False) == "cpu"
    monkeypatch.setitem(cuda_room._cache, "selective_scan", None)
    assert resolve_backend("selective_scan", None, on_cuda=True) == "triton"
    monkeypatch.setattr(triton_room, "unavailable_reason", lambda on_cuda: "needs the triton package")
    assert resolve_backend("selective_scan", None, on_cuda=True) == "torch"


def test_which_backends_run_the_directions_in_one_call(monkeypatch):
    """The CPU kernel always; Triton on CPU tensors (its interpreter), on CUDA only with
    ARMVISION_TRITON_DIRECTIONS=1 (not yet run on a GPU); the others one scan per direction."""
    assert runs_directions("cpu", on_cuda=False) is True
    assert runs_directions("triton", on_cuda=False) is True
    assert runs_directions("triton", on_cuda=True) is False
    monkeypatch.setenv(env.TRITON_DIRECTIONS, "1")
    assert runs_directions("triton", on_cuda=True) is True
    monkeypatch.setenv(env.TRITON_DIRECTIONS, "0")
    assert runs_directions("triton", on_cuda=False) is False
    monkeypatch.setenv(env.TRITON_DIRECTIONS, "maybe")
    with pytest.raises(ConfigError, match="ARMVISION_TRITON_DIRECTIONS is 'maybe'; use 1"):
        runs_directions("triton", on_cuda=True)
    for name in ("torch", "ref", "cuda"):
        assert runs_directions(name, on_cuda=name == "cuda") is False, name


def test_forced_backends_on_the_wrong_device_are_clear_errors(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ConfigError, match="backend 'cpu'.*needs CPU tensors"):
        resolve_backend("selective_scan", "cpu", on_cuda=True)
    monkeypatch.setattr(triton_room.triton_scan, "triton_importable", lambda: True)
    monkeypatch.setattr(triton_room.triton_scan, "interpreter_enabled", lambda: False)
    with pytest.raises(ConfigError, match="backend 'triton'.*TRITON_INTERPRET=1"):
        resolve_backend("selective_scan", "triton", on_cuda=False)
    monkeypatch.setattr(triton_room.triton_scan, "triton_importable", lambda: False)
    with pytest.raises(ConfigError, match="backend 'triton'.*needs the triton package"):
        resolve_backend("selective_scan", "triton", on_cuda=True)


def test_scan_only_backend_leaves_the_conv_its_own_choice(monkeypatch):
    monkeypatch.setenv(env.SCAN_BACKEND, "cpu")
    assert resolve_backend("causal_conv1d", None, on_cuda=False) == "torch"


def test_env_var_is_the_default_and_an_argument_wins(monkeypatch):
    calls = []
    real_ref, real_torch = api.selective_scan_ref, torch_room.selective_scan_torch
    monkeypatch.setattr(api, "selective_scan_ref", lambda *a, **k: calls.append("ref") or real_ref(*a, **k))
    monkeypatch.setattr(torch_room, "selective_scan_torch",
                        lambda *a, **k: calls.append("torch") or real_torch(*a, **k))
    monkeypatch.setenv(env.SCAN_BACKEND, "ref")
    out_ref = selective_scan_fn(*scan_inputs())
    monkeypatch.setenv(env.SCAN_BACKEND, "torch")
    out_torch = selective_scan_fn(*scan_inputs())
    assert calls == ["ref", "torch"]
    torch.testing.assert_close(out_ref, out_torch, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv(env.SCAN_BACKEND, "ref")  # an explicit argument wins over the env var
    selective_scan_fn(*scan_inputs(), backend="torch")
    assert calls[-1] == "torch"


def test_bad_env_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(env.SCAN_BACKEND, "tpu")
    with pytest.raises(ConfigError, match="ARMVISION_SCAN_BACKEND is 'tpu'; choose one of auto, ref"):
        selective_scan_fn(*scan_inputs())


def test_bad_backend_argument_is_a_clear_error():
    with pytest.raises(ConfigError, match="backend argument is 'tpu'; choose one of"):
        selective_scan_fn(*scan_inputs(), backend="tpu")


def test_cuda_backend_without_kernels_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(cuda_room._cache, "selective_scan", None)
    monkeypatch.setitem(cuda_room._cache, "causal_conv1d", None)
    with pytest.raises(ConfigError, match="mamba-ssm"):
        selective_scan_fn(*scan_inputs(), backend="cuda")
    with pytest.raises(ConfigError, match="causal-conv1d"):
        causal_conv1d_fn(torch.randn(1, 2, 5), torch.randn(2, 4), backend="cuda")
    monkeypatch.setenv(env.SCAN_BACKEND, "cuda")
    with pytest.raises(ConfigError, match="environment variable ARMVISION_SCAN_BACKEND"):
        selective_scan_fn(*scan_inputs())
    assert "cuda" not in available_backends()


def test_cuda_backend_with_cpu_tensors_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(cuda_room._cache, "selective_scan", lambda *a, **k: None)
    with pytest.raises(ConfigError, match="needs CUDA tensors"):
        selective_scan_fn(*scan_inputs(), backend="cuda")


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(B=torch.randn(2, 4, 7)), r"B has shape \(2, 4, 7\); it must be .*\(batch, N, L\) = \(2, 4, 8\)"),
    (lambda a: a.update(C=torch.randn(2, 5, 8)), r"C has shape \(2, 5, 8\); it must be \(D, N\) = \(3, 4\)"),
    (lambda a: a.update(B=torch.randn(3, 4, 8)), r"B has shape \(3, 4, 8\); it must be"),
    (lambda a: a.update(B=torch.randn(4, 8)), r"B has shape \(4, 8\); it must be \(D, N\) = \(3, 4\)"),
    (lambda a: a.update(B=torch.randn(2, 2, 4, 8)), r"B has 2 groups \(shape \(2, 2, 4, 8\)\), which does not divide D=3"),
    (lambda a: a.update(u=torch.randn(3, 8)), r"u must have shape \(batch, D, L\), got \(3, 8\)"),
    (lambda a: a.update(delta=torch.randn(2, 3, 9)), r"delta has shape \(2, 3, 9\) but u has shape \(2, 3, 8\)"),
    (lambda a: a.update(A=torch.randn(4, 4)), r"A has shape \(4, 4\) but must be \(D, N\) with D=3"),
    (lambda a: a.update(D=torch.randn(4)), r"D has shape \(4,\) but must be \(D,\) = \(3,\)"),
    (lambda a: a.update(z=torch.randn(2, 3)), r"z has shape \(2, 3\) but u has shape \(2, 3, 8\)"),
    (lambda a: a.update(delta_bias=torch.randn(3, 1)), r"delta_bias has shape \(3, 1\)"),
    (lambda a: a.update(u=torch.randn(2, 3, 0), delta=torch.randn(2, 3, 0)), r"empty sequence"),
    (lambda a: a.update(A=-torch.ones(3, 4, dtype=torch.complex64)), r"A must be a real floating-point"),
])
def test_bad_inputs_raise_value_error_naming_tensors(change, message):
    u, delta, A, B, C = scan_inputs()
    args = dict(u=u, delta=delta, A=A, B=B, C=C, D=None, z=None, delta_bias=None)
    change(args)
    with pytest.raises(ValueError, match=message):
        selective_scan_fn(**args)


@pytest.mark.parametrize("x,w,b,act,message", [
    (torch.randn(2, 3), torch.randn(3, 4), None, None, r"x must have shape \(batch, D, L\)"),
    (torch.randn(2, 3, 5), torch.randn(4, 4), None, None, r"weight has shape \(4, 4\) but must be \(D, width\)"),
    (torch.randn(2, 3, 5), torch.randn(3, 4), torch.randn(2), None, r"bias has shape \(2,\)"),
    (torch.randn(2, 3, 5), torch.randn(3, 4), None, "relu", r"activation must be"),
])
def test_conv_bad_inputs(x, w, b, act, message):
    with pytest.raises(ValueError, match=message):
        causal_conv1d_fn(x, w, b, act)


def test_compile_is_opt_in(monkeypatch):
    from armvision.ops.backends.torch_scan import compile_enabled

    assert compile_enabled() is False
    monkeypatch.setenv(env.SCAN_COMPILE, "1")
    assert compile_enabled() is True
    assert compile_enabled(False) is False
