"""Backend choice (argument, env var, auto) and input validation of the public entry points."""
import pytest
import torch

import armvision.ops.dispatch as dispatch
from armvision.errors import ConfigError
from armvision.ops import available_backends, causal_conv1d_fn, resolve_backend, selective_scan_fn


def scan_inputs(batch=2, dim=3, L=8, N=4):
    torch.manual_seed(0)
    return (torch.randn(batch, dim, L), torch.rand(batch, dim, L), -torch.rand(dim, N) - 0.5,
            torch.randn(batch, N, L), torch.randn(batch, N, L))


def test_auto_picks_cpu_kernel_on_cpu(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_BACKEND, raising=False)
    assert resolve_backend("selective_scan", None, on_cuda=False) == "cpu"
    assert resolve_backend("selective_scan", "auto", on_cuda=False, dtype=torch.bfloat16) == "cpu"
    assert resolve_backend("selective_scan", None, on_cuda=False, dtype=torch.float64) == "torch"  # exact path
    assert resolve_backend("selective_scan", "cpu", on_cuda=False, dtype=torch.float64) == "torch"
    assert resolve_backend("causal_conv1d", None, on_cuda=False) == "torch"
    assert available_backends()[:3] == ["ref", "torch", "cpu"]


def test_auto_falls_back_to_torch_without_the_cpu_kernel(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_BACKEND, raising=False)
    monkeypatch.setattr(dispatch.cpu_kernel, "load", lambda: None)
    monkeypatch.setattr(dispatch.cpu_kernel, "unavailable_reason", lambda: "no C compiler found")
    assert resolve_backend("selective_scan", None, on_cuda=False) == "torch"
    with pytest.raises(ConfigError, match="backend 'cpu'.*unavailable: no C compiler found"):
        resolve_backend("selective_scan", "cpu", on_cuda=False)


def test_auto_on_cuda_prefers_mamba_then_triton_then_torch(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_BACKEND, raising=False)
    monkeypatch.setitem(dispatch._kernel_cache, "selective_scan", lambda *a, **k: None)
    monkeypatch.setattr(dispatch, "triton_available", lambda: True)
    assert resolve_backend("selective_scan", None, on_cuda=True) == "cuda"
    assert resolve_backend("selective_scan", None, on_cuda=False) == "cpu"
    monkeypatch.setitem(dispatch._kernel_cache, "selective_scan", None)
    assert resolve_backend("selective_scan", None, on_cuda=True) == "triton"
    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    assert resolve_backend("selective_scan", None, on_cuda=True) == "torch"


def test_mixer_takes_the_one_launch_triton_path_on_cuda_only_when_asked(monkeypatch):
    """One fused call for all directions: always with the CPU kernel; with Triton under the interpreter, and on
    CUDA only with ARMVISION_TRITON_GROUPS=1 (not yet run on a GPU); never on the torch path."""
    monkeypatch.delenv(dispatch.ENV_TRITON_GROUPS, raising=False)
    monkeypatch.setattr(dispatch, "_resolve", lambda op, b, on_cuda, dtype=None: "triton")
    assert dispatch.mixer_fused(on_cuda=True) is False
    assert dispatch.mixer_fused(on_cuda=False) is True  # Triton's interpreter on CPU tensors
    monkeypatch.setenv(dispatch.ENV_TRITON_GROUPS, "1")
    assert dispatch.mixer_fused(on_cuda=True) is True
    monkeypatch.setenv(dispatch.ENV_TRITON_GROUPS, "0")
    assert dispatch.mixer_fused(on_cuda=False) is False
    monkeypatch.setenv(dispatch.ENV_TRITON_GROUPS, "yes")
    with pytest.raises(ConfigError, match="ARMVISION_TRITON_GROUPS is 'yes'; use 1"):
        dispatch.mixer_fused(on_cuda=True)
    for backend, fused in (("cpu", True), ("torch", False), ("cuda", False)):
        monkeypatch.setattr(dispatch, "_resolve", lambda op, b, on_cuda, dtype=None, r=backend: r)
        assert dispatch.mixer_fused(on_cuda=backend == "cuda") is fused, backend


def test_forced_backends_on_the_wrong_device_are_clear_errors(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_BACKEND, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ConfigError, match="backend 'cpu'.*needs CPU tensors"):
        resolve_backend("selective_scan", "cpu", on_cuda=True)
    monkeypatch.setattr(dispatch, "triton_available", lambda: True)
    with pytest.raises(ConfigError, match="backend 'triton'.*TRITON_INTERPRET=1"):
        resolve_backend("selective_scan", "triton", on_cuda=False)
    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    with pytest.raises(ConfigError, match="backend 'triton'.*needs the triton package"):
        resolve_backend("selective_scan", "triton", on_cuda=True)


def test_scan_only_backend_leaves_the_conv_its_own_choice(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_BACKEND, "cpu")
    assert resolve_backend("causal_conv1d", None, on_cuda=False) == "torch"


def test_env_var_forces_backend(monkeypatch):
    calls = []
    real_ref, real_torch = dispatch.selective_scan_ref, dispatch.selective_scan_torch
    monkeypatch.setattr(dispatch, "selective_scan_ref", lambda *a, **k: calls.append("ref") or real_ref(*a, **k))
    monkeypatch.setattr(dispatch, "selective_scan_torch",
                        lambda *a, **k: calls.append("torch") or real_torch(*a, **k))
    monkeypatch.setenv(dispatch.ENV_BACKEND, "ref")
    out_ref = selective_scan_fn(*scan_inputs())
    monkeypatch.setenv(dispatch.ENV_BACKEND, "torch")
    out_torch = selective_scan_fn(*scan_inputs())
    assert calls == ["ref", "torch"]
    torch.testing.assert_close(out_ref, out_torch, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv(dispatch.ENV_BACKEND, "ref")  # an explicit argument wins over the env var
    selective_scan_fn(*scan_inputs(), backend="torch")
    assert calls[-1] == "torch"


def test_bad_env_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_BACKEND, "tpu")
    with pytest.raises(ConfigError, match="ARMVISION_SCAN_BACKEND.*'tpu'"):
        selective_scan_fn(*scan_inputs())


def test_cuda_backend_without_kernels_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_BACKEND, raising=False)
    monkeypatch.setitem(dispatch._kernel_cache, "selective_scan", None)
    monkeypatch.setitem(dispatch._kernel_cache, "causal_conv1d", None)
    with pytest.raises(ConfigError, match="mamba-ssm"):
        selective_scan_fn(*scan_inputs(), backend="cuda")
    with pytest.raises(ConfigError, match="causal-conv1d"):
        causal_conv1d_fn(torch.randn(1, 2, 5), torch.randn(2, 4), backend="cuda")
    monkeypatch.setenv(dispatch.ENV_BACKEND, "cuda")
    with pytest.raises(ConfigError, match="environment variable ARMVISION_SCAN_BACKEND"):
        selective_scan_fn(*scan_inputs())
    assert "cuda" not in available_backends()


def test_cuda_backend_with_cpu_tensors_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_BACKEND, raising=False)
    monkeypatch.setitem(dispatch._kernel_cache, "selective_scan", lambda *a, **k: None)
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
    from armvision.ops.selective_scan import compile_enabled

    monkeypatch.delenv("ARMVISION_SCAN_COMPILE", raising=False)
    assert compile_enabled() is False
    monkeypatch.setenv("ARMVISION_SCAN_COMPILE", "1")
    assert compile_enabled() is True
    assert compile_enabled(False) is False
