"""The same study on any ImageFolder and on a GPU: `--device`, `--preset study_gpu`, GPU hours from `--estimate`. No
GPU here: the plumbing runs on a tiny ImageFolder with --device cpu, and --device cuda without CUDA is one line."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from armvision.cli import main
from armvision.experiments import study
from armvision.experiments.study import make_plan, plan_cells


def _folder(root, classes=2, train=40, val=4):
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    return root


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("what", [["--estimate"], ["--curves"], []])
def test_device_cuda_without_cuda_is_one_line(tmp_path, capsys, what):
    assert main(["study", "--device", "cuda", "--quick", "--output", str(tmp_path / "s"), *what]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "CUDA is not available" in err[0]
    assert not (tmp_path / "s").exists()


def test_gpu_preset_is_the_papers_geometry_with_budgets_in_the_cpu_studys_epochs():
    plan = make_plan(preset="study_gpu", data="/data/imagenet100")
    assert plan.device == "cuda" and plan.num_workers > 0 and plan.data == "/data/imagenet100"
    assert (plan.img_size, plan.patch_size, plan.default_cluster) == (192, 16, 4)  # 12x12 patches, 9 clusters
    cpu = make_plan()
    fit, batch = 114_020, plan.batch_size  # ImageNet-100's train images less the 10 % selection split
    for key in ("pretrain_steps", "finetune_steps", "low_label_finetune_steps"):  # 3,600 fit images on a CPU
        assert getattr(plan, key) * batch / fit == pytest.approx(getattr(cpu, key) * cpu.batch_size / 3600, rel=1e-3)
    assert plan_cells(plan) and len(plan.seeds) >= 5
    with pytest.raises(study.plan.ConfigError, match="--preset nope"):
        make_plan(preset="nope")


def test_num_workers_is_the_common_spelling_and_workers_still_works():
    from armvision.cli import Parser
    from armvision.cli.study import add_arguments, plan_of

    parser = Parser(prog="armvision study")
    add_arguments(parser)
    assert plan_of(parser.parse_args(["--num-workers", "3"])).num_workers == 3
    assert plan_of(parser.parse_args(["--workers", "2"])).num_workers == 2  # the spelling before issue 23
    assert "--workers" not in parser.format_help()


def test_estimate_speaks_gpu_hours_for_a_gpu_plan():
    plan = make_plan(preset="study_gpu", data="/x", main_only=True)
    times = {"arm": 0.2, "mae": 0.1, "contrastive": 0.3, "finetune": 0.15, "probe": 60.0}
    text = study.format_estimate(plan, study.estimate(plan, times, jobs=1), 1, times)
    assert "GPU hours" in text and "CPU hours" not in text
    assert "CPU hours" in study.format_estimate(make_plan(main_only=True), study.estimate(
        make_plan(main_only=True), times, 1), 1, times)


@pytest.mark.slow
def test_the_study_runs_on_any_imagefolder(tmp_path, capsys):
    """The plumbing of a GPU run, on a CPU: an ImageFolder's val/ is the held-out test split, a selection split is
    carved from train/, each seed finetunes on its own labelled subset."""
    data = _folder(tmp_path / "imgs")
    out = tmp_path / "study"
    args = ["study", "--data", str(data), "--device", "cpu", "--quick", "--main-only", "--methods", "arm",
            "--label-fractions", "0.5", "--output", str(out)]
    assert main([*args, "--estimate"]) == 0
    assert "CPU hours" in capsys.readouterr().out
    assert main(args) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["data"] == {"name": str(data), "note": "an ImageFolder", "fit": 72, "selection": 8,
                                   "test": 8, "labelled: 0.5": 36}
    ft = [r for r in doc["cells"].values() if r["kind"] == "finetune"]
    assert ft and all(r["evaluated"] == 8 and r["labelled"] == 36 and r["cpu_seconds"] > 0 for r in ft)
    assert "8 held-out test images" in (out / "REPORT.md").read_text()
    for log in (out / "cells").glob("pretrain-*/log.jsonl"):  # no validation pass every epoch in the measured time
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        assert sum(r.get("kind") == "val" for r in rows) <= 1, log
