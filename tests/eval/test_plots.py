"""`armvision plot`: log parsing, metric families, PNG output and error messages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from armvision.cli import main
from armvision.errors import DataError
from armvision.eval.plots import extract_series, family_of, plot_runs, read_log, smooth


def _write_log(run_dir: Path, lines: list, tail: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(rec) + "\n" for rec in lines) + tail
    (run_dir / "log.jsonl").write_text(text)
    return run_dir


def _train_log(lr0: float, steps: int = 12) -> list:
    recs = []
    for s in range(steps):
        recs.append({"step": s, "epoch": s // 4, "loss": 1.0 / (s + 1), "lr": lr0 * s})
        if s % 4 == 3:
            recs.append({"epoch": s // 4, "val_acc1": 10.0 * s, "val_acc5": 20.0 * s, "ema_val_acc1": 9.0 * s})
    return recs


def test_read_log_skips_truncated_last_line_and_blank_lines(tmp_path):
    run = _write_log(tmp_path / "r", [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5}], tail='\n{"step": 2, "lo')
    assert read_log(run) == [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5}]


def test_read_log_names_file_and_line_of_a_malformed_middle_line(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 0, "loss": 1}\nnot json\n{"step": 1, "loss": 1}\n')
    with pytest.raises(DataError, match=r"log\.jsonl:2: not valid JSON"):
        read_log(run)
    (run / "log.jsonl").write_text('[1, 2]\n{"step": 1, "loss": 1}\n')
    with pytest.raises(DataError, match=r"log\.jsonl:1: expected a JSON object"):
        read_log(run)


def test_missing_log_and_missing_dir_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_log(tmp_path)
    with pytest.raises(DataError, match="no such run directory"):
        read_log(tmp_path / "nope")


def test_families_and_x_axis_choice():
    assert [family_of(k) for k in ("loss", "val_loss", "lr", "min_lr", "val_acc1", "ema_val_acc5", "grad norm")] == [
        "loss", "loss", "lr", "lr", "accuracy", "accuracy", "grad_norm"]
    series = {s.key: s for s in extract_series(_train_log(0.1), "run")}
    assert set(series) == {"loss", "lr", "val_acc1", "val_acc5", "ema_val_acc1"}  # step/epoch are axes, not metrics
    assert series["loss"].x_name == "step" and series["loss"].x == [float(s) for s in range(12)]
    assert series["val_acc1"].x_name == "epoch" and series["val_acc1"].x == [0.0, 1.0, 2.0]
    assert series["val_acc1"].y == [30.0, 70.0, 110.0]
    # booleans are not numbers to plot
    assert extract_series([{"step": 0, "done": True}], "r") == []


def test_trainer_log_format_kind_and_time():
    """The lines armvision.train writes: a "kind", the step, and a wall-clock "time" on every line."""
    recs = [{"kind": "train", "step": 10, "epoch": 0.5, "loss": 2.0, "lr": 1e-3, "img_per_s": 50.0, "time": 1.7e9},
            {"kind": "train", "step": 20, "epoch": 1.0, "loss": 1.0, "lr": 2e-3, "img_per_s": 55.0, "time": 1.7e9},
            {"kind": "val", "step": 20, "epoch": 1, "loss": 1.5, "val_acc1": 40.0, "time": 1.7e9}]
    series = {s.key: s for s in extract_series(recs, "run")}
    assert list(series) == ["loss", "lr", "img_per_s", "val/loss", "val_acc1"]
    assert series["loss"].y == [2.0, 1.0] and series["val/loss"].y == [1.5]  # train and val losses kept apart
    assert series["val/loss"].x_name == "step" and series["val/loss"].x == [20.0]
    assert family_of("val/loss") == "loss" and family_of("val/img_per_s") == "val_img_per_s"


def test_smooth_is_a_trailing_mean():
    assert smooth([1, 2, 3, 4, 5], 1) == [1, 2, 3, 4, 5]
    assert smooth([1, 2, 3, 4, 5], 2) == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert smooth([2, float("nan"), 4], 3) == [2.0, 2.0, 3.0]


def test_plot_runs_writes_one_png_per_family(tmp_path):
    a = _write_log(tmp_path / "baseline", _train_log(0.1))
    b = _write_log(tmp_path / "ablation", _train_log(0.2) + [{"step": 12, "grad_norm": 1.0}])
    paths = plot_runs([a, b], tmp_path / "plots", smooth_n=2)
    assert [p.name for p in paths] == ["accuracy.png", "grad_norm.png", "loss.png", "lr.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200
    with Image.open(tmp_path / "plots" / "accuracy.png") as im:  # three panels side by side: wider than tall
        assert im.size[0] > 2.5 * im.size[1]


def test_cli_default_output_and_errors(tmp_path, capsys):
    run = _write_log(tmp_path / "run1", _train_log(0.1))
    assert main(["plot", str(run)]) == 0
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["accuracy.png", "loss.png", "lr.png"]
    assert main(["plot", str(tmp_path / "empty_dir_that_is_missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def _run(tmp_path, name, config, lines):
    run = _write_log(tmp_path / name, lines)
    (run / "config.yaml").write_text(config)
    return run


def _trainer_lines(loss0, steps=40):
    recs = [{"kind": "train", "step": s, "epoch": s / 10, "loss": loss0 / (s + 1) + 0.01 * (s % 3), "lr": 1e-3 * s,
             "img_per_s": 50.0} for s in range(1, steps + 1)]
    return recs + [{"kind": "val", "step": steps, "epoch": 4, "val_loss": loss0 / 2, "acc1": 60.0, "ema_acc1": 55.0}]


def test_panels_in_words_losses_of_each_kind_apart_and_the_lr_never_smoothed(tmp_path):
    """Issue 23 (7): titles and y labels in words with units; the pretraining MSE and the finetuning cross-entropy
    on axes of their own; --smooth leaves the learning rate as it is."""
    from armvision.eval.plots import collect, describe, draw_family, panels_by_family

    pt = _run(tmp_path, "pt", "method: arm\nmodel:\n  target: norm_pixel\n", _trainer_lines(1.0))
    ft = _run(tmp_path, "ft", "init: runs/pt/checkpoint-last.pth\n", _trainer_lines(2.3))
    families = panels_by_family(collect([pt, ft]))
    assert set(families["loss"]) == {("loss", "pretraining"), ("loss", "finetuning"), ("val_loss", "pretraining"),
                                     ("val_loss", "finetuning")}
    assert describe("loss", "pretraining", "mean squared error (normalised pixels)") == (
        "pretraining loss, training batches", "mean squared error (normalised pixels)")
    assert describe("val_loss", "finetuning", "cross-entropy (nats)")[0] == "finetuning loss, validation images"
    assert describe("val/acc1") == ("validation top-1 accuracy", "top-1 accuracy (%)")
    assert describe("val/ema_acc1")[0] == "validation top-1 accuracy of the EMA weights"
    assert describe("img_per_s") == ("training throughput", "images / s")
    colours = {"pt": "C0", "ft": "C1"}
    loss_fig = draw_family("loss", families["loss"], colours, smooth_n=3)
    titles = {ax.get_title(): ax.get_ylabel() for ax in loss_fig.axes}
    assert titles["pretraining loss, training batches"] == "mean squared error (normalised pixels)"
    assert titles["finetuning loss, training batches"] == "cross-entropy (nats)"
    assert all(ax.get_xlabel() in ("optimizer step", "epoch") for ax in loss_fig.axes)
    assert len(loss_fig.axes[0].lines) == 2  # one run per loss panel: raw + its moving average
    lr_fig = draw_family("lr", families["lr"], colours, smooth_n=3)
    assert len(lr_fig.axes[0].lines) == 2 and lr_fig.axes[0].get_ylabel() == "learning rate"  # 2 runs, raw only
    assert [ln.get_ydata().tolist() for ln in lr_fig.axes[0].lines][0] == [1e-3 * s for s in range(1, 41)]
    assert "img_per_s" not in {ax.get_title() for f in families for ax in draw_family(f, families[f], colours).axes}
