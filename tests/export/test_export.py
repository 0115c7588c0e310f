"""Issue 14: the tiny classifier and pretrainer encoder exported to torch.export (.pt2) and ONNX give eager's outputs
(<= 1e-4), with a dynamic batch (and a dynamic image size for the classifier); `armvision export` checks and reports,
and refuses bad inputs with one line and exit 2."""
import importlib

import pytest
import torch

from armtest import tiny_classifier, tiny_pretrainer
from armvision.cli import main
from armvision.deploy import export, onnx_session
from armvision.errors import ConfigError


def _importable(*names):
    try:
        for name in names:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


# only the ONNX tests need the export extra (a module-level skip used to drop the torch.export ones too)
needs_onnx = pytest.mark.skipif(not _importable("onnx", "onnxscript", "onnxruntime"),
                                reason="ONNX export needs onnx, onnxscript and onnxruntime (the export extra)")


def _orders_are_real(model):
    """The mixers' cached scan orders must be real tensors after tracing (a traced tensor must not leak)."""
    from torch._subclasses.fake_tensor import FakeTensor

    for m in model.modules():
        for t in m.__dict__.get("_orders", {}).values():
            assert not isinstance(t, FakeTensor)


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return tiny_classifier().eval()


def test_classifier_pt2_dynamic_batch_and_size(classifier, tmp_path):
    res = export(classifier, tmp_path / "cls.pt2", dynamic_size=True)
    assert res.format == "pt2" and res.output == "logits" and res.max_diff <= 1e-4
    assert (2, 3, 40, 48) in res.checked_shapes  # another image size than the traced one
    program = torch.export.load(str(tmp_path / "cls.pt2"))  # a fresh load, another batch and size
    x = torch.randn(5, 3, 24, 40)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), classifier(x), atol=1e-4, rtol=0)
    _orders_are_real(classifier)
    with torch.no_grad():  # and eager still works afterwards at the traced shapes
        classifier(torch.randn(2, 3, 32, 32))


@needs_onnx
def test_classifier_onnx_dynamic_batch_and_size(classifier, tmp_path):
    res = export(classifier, tmp_path / "cls.onnx", dynamic_size=True)
    assert res.format == "onnx" and res.max_diff <= 1e-4
    import onnx

    graph = onnx.load(str(tmp_path / "cls.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "Scan" in ops and not any(n.domain.startswith("armvision") for n in graph.node)  # standard ops only
    session = onnx_session(tmp_path / "cls.onnx", threads=1)
    x = torch.randn(4, 3, 48, 24)
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        assert (torch.from_numpy(got) - classifier(x)).abs().max() <= 1e-4


@pytest.mark.parametrize("fmt", ["pt2", pytest.param("onnx", marks=needs_onnx)])
def test_pretrainer_encoder_features(fmt, tmp_path):
    torch.manual_seed(1)
    pre = tiny_pretrainer().eval()
    res = export(pre, tmp_path / f"enc.{fmt}")
    assert res.output == "features" and res.max_diff <= 1e-4
    assert len(res.checked_shapes) == 2  # batch 1 and 3
    with pytest.raises(ConfigError, match="image size"):
        export(pre, tmp_path / f"enc2.{fmt}", dynamic_size=True)


def test_decomposed_scan_matches_the_kernel_and_survives_strong_decay():
    """The ONNX decomposition equals the custom op, also where exp(cumulative dt*A) would underflow float32."""
    from armvision.ops import selective_scan_directions
    from armvision.ops.scan_decomposed import directions_scan

    torch.manual_seed(0)
    G, b, L, Dg, N = 4, 2, 70, 16, 4
    xd = torch.randn(G, b * L, 2 * N)
    u, delta = torch.randn(G, b, L, Dg), torch.randn(G, b, L, Dg) * 3
    A = -torch.exp(torch.randn(G * Dg, N) * 2)
    B, C = xd[..., :N].view(G, b, L, N), xd[..., N:].view(G, b, L, N)  # the mixer's views
    D, bias = torch.randn(G * Dg), torch.randn(G * Dg)
    z = torch.randn(b, L, 2 * Dg)[..., :Dg]
    index = torch.stack([torch.randperm(L) for _ in range(G)])
    for idx in (index, None):
        want = selective_scan_directions(u, delta, A, B, C, D, z, bias, idx, backend="cpu")
        got = directions_scan(u, delta, A, B, C, D, z, bias, idx)
        assert torch.isfinite(got).all()
        assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item())


def _one_line(capsys, *parts):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(p in err for p in parts), err


def test_cli_exports_checks_and_refuses_bad_inputs(tmp_path, capsys):
    import armvision

    armvision.save_pretrained(tiny_classifier(), tmp_path / "cls")
    armvision.save_pretrained(tiny_pretrainer(), tmp_path / "pre")
    assert main(["export", str(tmp_path / "cls"), str(tmp_path / "c.pt2")]) == 0
    out = capsys.readouterr().out
    assert "max |exported - eager| = 0" in out and (tmp_path / "c.pt2").is_file()
    # unknown format, by suffix and by flag
    assert main(["export", str(tmp_path / "cls"), str(tmp_path / "c.tflite")]) == 2
    _one_line(capsys, "c.tflite", "pt2", "onnx")
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path / "cls"), str(tmp_path / "c.onnx"), "--format", "tflite"])
    assert e.value.code == 2
    _one_line(capsys, "--format")
    # a pretraining checkpoint is not a classifier (unless --features)
    assert main(["export", str(tmp_path / "pre"), str(tmp_path / "p.pt2")]) == 2
    _one_line(capsys, "not a classifier", "--features")
    # a checkpoint that does not exist, an output that cannot be written, a batch of 1
    assert main(["export", str(tmp_path / "missing.pth"), str(tmp_path / "m.pt2")]) == 2
    _one_line(capsys, "missing.pth")
    assert main(["export", str(tmp_path / "cls"), str(tmp_path / "c.pt2" / "x.onnx")]) == 2
    _one_line(capsys, "x.onnx")
    assert main(["export", str(tmp_path / "cls"), str(tmp_path / "c2.pt2"), "--batch", "1"]) == 2
    _one_line(capsys, "--batch-size 1")  # the old spelling --batch still works (hidden)
    assert not (tmp_path / "m.pt2").exists() and not (tmp_path / "c2.pt2").exists()
