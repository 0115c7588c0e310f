"""`armvision bench vs-vit`: one interleaved cell per (precision, image size, batch, mode), ARM over ViT, the ISA
line and the JSON record; bad values refused in one line."""
import json
import subprocess
import sys

from armvision.bench.vs_vit import Cell, format_cell, run_cell


def test_one_cell_times_both_models():
    cell = run_cell("tiny", "fp32", 32, 1, "forward", repeats=1)
    assert cell.arm_s > 0 and cell.vit_s > 0 and abs(cell.ratio - cell.vit_s / cell.arm_s) < 1e-12
    assert abs(cell.paired - cell.ratio) < 1e-12  # one round: its own ratio is the ratio of the medians
    assert "ARM / ViT" in format_cell(cell) and "paired" in format_cell(cell)
    row = Cell("bf16", 1024, 1, "train", arm_s=2.0, vit_s=3.0, paired=1.4).row()
    assert row["arm_over_vit"] == 1.5 and row["arm_img_s"] == 0.5 and row["paired_arm_over_vit"] == 1.4


def test_paired_ratio_is_each_rounds_own_ratio(monkeypatch):
    """The paired ratio pairs each round's ARM and ViT times (the rounds alternate which model runs first) and
    takes the median of those ratios; here it differs from the ratio of the two medians."""
    import torch

    from armvision.bench import vs_vit

    clock = {"t": 0.0}
    # seconds per step in run order: warm-up (ARM, ViT), then rounds (ViT, ARM), (ARM, ViT), (ViT, ARM), (ARM, ViT)
    steps = iter([1.0, 1.0, 2.0, 1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 2.0])

    def step(model, opt, x, y, mode, precision):
        clock["t"] += next(steps)

    monkeypatch.setattr(vs_vit, "_step", step)
    monkeypatch.setattr(vs_vit, "CLOCKS", {"cpu": lambda: clock["t"]})
    cell = vs_vit.run_cell("tiny", "fp32", 32, 1, "forward", repeats=4,
                           models={"ARM": torch.nn.Linear(1, 1), "ViT": torch.nn.Linear(1, 1)})
    # rounds' ViT / ARM: 2/1, 2/2, 2/3, 2/4 -> median 0.8333; medians: ViT 2, ARM 2.5 -> 0.8
    assert abs(cell.paired - (1.0 + 2 / 3) / 2) < 1e-12 and abs(cell.ratio - 0.8) < 1e-12


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
