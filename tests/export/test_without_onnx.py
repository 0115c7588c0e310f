"""Issue 25 (7): without the ONNX packages, only the ONNX export tests are skipped; the torch.export (.pt2) tests and
the decomposed scan's still run (a module-level skip used to drop them all)."""
import os
import subprocess
import sys
from pathlib import Path

HIDE_ONNX = "import sys\nfor name in ('onnx', 'onnxscript', 'onnxruntime'):\n    sys.modules[name] = None  # ImportError\n"
EXPORT_TESTS = Path(__file__).resolve().parent / "test_export.py"


def _pytest(tmp_path, *args):
    (tmp_path / "hide_onnx.py").write_text(HIDE_ONNX)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "hide_onnx", "-p", "no:cacheprovider", "-q", "-rs",
                           str(EXPORT_TESTS), *args], env=env, capture_output=True, text=True, timeout=600)


def test_the_export_tests_that_need_no_onnx_run_without_it(tmp_path):
    listed = _pytest(tmp_path, "--collect-only")
    assert listed.returncode == 0, listed.stdout[-3000:]
    assert "test_classifier_pt2_dynamic_batch_and_size" in listed.stdout
    assert "test_pretrainer_encoder_features[pt2]" in listed.stdout
    ran = _pytest(tmp_path, "-k", "decomposed or onnx_dynamic")
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert "1 passed, 1 skipped" in ran.stdout and "the export extra" in ran.stdout, ran.stdout[-2000:]
