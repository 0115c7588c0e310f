"""The one-command GPU check (armvision.bench.gpu_check, benchmarks/gpu_check.sh): its --dry-run end to end on
the CPU (tiny shapes, Triton through its interpreter, in a subprocess), and its report helpers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from armvision.bench import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_end_to_end(tmp_path):
    out = tmp_path / "gc"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    env.pop("TRITON_INTERPRET", None)  # the dry run must arrange the interpreter itself
    env.pop("ARMVISION_SCAN_BACKEND", None)
    p = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--dry-run"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert report["dry_run"] and report["environment"]["device"] == "cpu"
    s = report["sections"]
    assert set(s) == {"correctness", "scan_speed", "pretrain", "models"}
    for name, sec in s.items():
        assert "error" not in sec, (name, sec.get("error"), sec.get("traceback"))
    backends = s["correctness"]["backends"]
    try:
        import triton  # noqa: F401
        has_triton = True
    except Exception:
        has_triton = False
    if has_triton:
        assert backends["triton"]["checks"] >= 2 and backends["triton"]["failed"] == 0, backends["triton"]
        assert any(r["backend"] == "triton" and "fwd_bwd_ms" in r for r in s["scan_speed"]["rows"])
        assert s["scan_speed"]["triton_tuning"] and "error" not in s["scan_speed"]["triton_tuning"][0]
        assert s["pretrain"]["scan_backend"].startswith("triton")
        agree = s["scan_speed"]["triton_directions"]["agreement"]  # one launch vs 4 separate calls, put back in place
        assert set(agree["float32"]) == {"out", "du", "ddelta", "dA"} and max(agree["float32"].values()) < 1e-4, agree
        assert "agreement, float32" in md
    assert "torch" in backends
    assert s["pretrain"]["losses_finite"] and s["pretrain"]["img_s"] > 0
    rows = {(r["model"], r["precision"]) for r in s["models"]["rows"] if "error" not in r}
    assert rows == {("arm", "fp32"), ("vit", "fp32"), ("arm", "bf16"), ("vit", "bf16")}
    for title in ("## 1. Scan correctness", "## 2. Scan speed", "## 3. ARM-B classifier vs ViT-B",
                  "## 4. ARM-B pretraining"):
        assert title in md


def test_backend_fallback_records_the_error():
    notes = []
    calls = []

    def run(backend):
        calls.append(backend)
        if backend == "nonsense":
            raise ValueError("unknown backend")
        return {"x": 1}

    r = gpu_check.with_backend_fallback(run, "nonsense", notes)
    assert r["scan_backend"] == "auto" and "unknown backend" in r["forced_backend_error"]
    assert calls == ["nonsense", "auto"] and len(notes) == 1 and "unknown backend" in notes[0]
    assert gpu_check.with_backend_fallback(run, None, notes) == {"x": 1, "scan_backend": "auto"}


def test_paper_budget():
    assert 3000 < gpu_check.PAPER_IMG_S < 3200


def test_markdown_renders_errors():
    report = {"dry_run": False, "total_s": 1.0, "environment": {"device": "cuda", "torch": "x"},
              "sections": {"correctness": {"error": "boom"}, "scan_speed": {"error": "boom"},
                           "models": {"error": "boom"}, "pretrain": {"error": "boom"}}}
    md = gpu_check.markdown(report)
    assert md.count("error: boom") == 4


def test_one_launch_row_runs_in_a_child_process_with_the_variable(monkeypatch):
    """The one-launch row's child reads ARMVISION_TRITON_DIRECTIONS=1; this process's environment stays as it was
    (here on the CPU, Triton through its interpreter, the dry run's tiny ARM)."""
    import pytest

    pytest.importorskip("triton")
    from armvision import env
    from armvision.bench.gpu_check.models import ONE_LAUNCH_ROW, one_launch_row

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(env.TRITON_DIRECTIONS, raising=False)
    cfg = gpu_check.make_config(gpu_check.GpuCheckOptions(out="unused", dry_run=True))
    row = one_launch_row("fp32", cfg)
    assert row["model"] == ONE_LAUNCH_ROW and row["triton_directions"] is True and row["train_img_s"] > 0
    assert env.TRITON_DIRECTIONS not in os.environ
