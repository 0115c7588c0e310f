"""`armvision bench vs-vit`: one interleaved cell per (precision, image size, batch, mode), ARM over ViT, the ISA
line and the JSON record; bad values refused in one line."""
import json
import subprocess
import sys

from armvision.bench.vs_vit import Cell, format_cell, run_cell


def test_one_cell_times_both_models():
    cell = run_cell("tiny", "fp32", 32, 1, "forward", repeats=1)
    assert cell.arm_s > 0 and cell.vit_s > 0 and abs(cell.ratio - cell.vit_s / cell.arm_s) < 1e-12
    assert "ARM / ViT" in format_cell(cell)
    row = Cell("bf16", 1024, 1, "train", arm_s=2.0, vit_s=3.0).row()
    assert row["arm_over_vit"] == 1.5 and row["arm_img_s"] == 0.5


def test_command_prints_the_machine_and_writes_json(tmp_path):
    out = tmp_path / "vs.json"
    res = subprocess.run([sys.executable, "-m", "armvision.cli", "bench", "vs-vit", "--size", "tiny", "--img-size",
                          "32", "--batch-size", "1", "--precision", "fp32", "bf16", "--mode", "forward",
                          "--repeats", "1", "--output-json", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("# ") and "kernel" in res.stdout.splitlines()[0]
    record = json.loads(out.read_text())
    assert [c["precision"] for c in record["cells"]] == ["fp32", "bf16"] and record["machine"]


def test_bad_values_are_one_line():
    res = subprocess.run([sys.executable, "-m", "armvision.cli", "bench", "vs-vit", "--repeats", "0"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "--repeats" in res.stderr and "Traceback" not in res.stderr
