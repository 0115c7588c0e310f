import json

import pytest

from armvision.errors import ConfigError
from armvision.experiments import study
from armvision.experiments.study import StudyPlan, plan_cells, run_study
from armvision.experiments.study import report as study_report
from armvision.experiments.study import runner as study_runner


def fake_result(cell):
    if cell.kind == "pretrain":
        return {"loss": 1.0 + cell.seed, "seconds": 2.0 if cell.variant.get("method") == "mae" else 3.0,
                "images": 640, "steps": 10}
    base = {"scratch": 50.0}.get("scratch" if not cell.variant else "", 60.0)
    return {"top1": base + cell.seed, "top5": 99.0, "seconds": 1.0}


def test_plan_covers_every_comparison():
    plan = StudyPlan()
    cells = plan_cells(plan)
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    pre = {c.name for c in cells if c.kind == "pretrain"}
    for c in cells:
        if c.kind == "finetune" and c.init_name:
            assert c.init_name in pre and names.index(c.init_name) < names.index(c.name)  # pretrained first
    main = [c for c in cells if c.kind == "finetune" and c.group == "main"]
    assert len(main) == len(plan.seeds) * len(plan.label_fractions) * 3
    ablations = {study.variant_name(c.variant) for c in cells if c.group == "ablation"}
    assert {"arm-c1-row-d4", "arm-c2-row-d4", "arm-c4-column-d4", "arm-c4-random-d4", "arm-c4-row-d1", "arm-c4-row-d2"} <= ablations


def test_cells_resume_after_interruption(tmp_path, monkeypatch):
    plan = StudyPlan.quick()
    calls = []

    def flaky(plan_, cell, root):
        if len(calls) == 5 and not getattr(flaky, "failed", False):
            flaky.failed = True
            raise KeyboardInterrupt("simulated kill")
        calls.append(cell.name)
        return fake_result(cell)

    monkeypatch.setattr(study_runner, "run_cell", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_study(plan, tmp_path)
    finished = sorted(p.parent.name for p in tmp_path.glob("cells/*/result.json"))
    assert finished == sorted(calls) and len(finished) == 5
    first_round = list(calls)
    run_study(plan, tmp_path)
    reran = calls[len(first_round):]
    assert not set(reran) & set(first_round)  # finished cells are not rerun
    assert len(first_round) + len(reran) == len(plan_cells(plan))
    report = (tmp_path / "REPORT.md").read_text()
    assert "Supervised vs ARM vs MAE" in report and "ms / image" in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == len(plan_cells(plan))
    # a third run does nothing at all
    n = len(calls)
    run_study(plan, tmp_path)
    assert len(calls) == n


def test_changed_plan_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(study_runner, "run_cell", lambda p, c, r: fake_result(c))
    run_study(StudyPlan.quick(), tmp_path)
    with pytest.raises(ConfigError, match="another plan"):
        run_study(StudyPlan.quick(pretrain_steps=99), tmp_path)


def test_verdict_uses_the_seed_spread():
    assert "no clear difference" in study_report._verdict([80, 82, 81], [81, 79, 83], "A", "B")
    assert "beats B by" in study_report._verdict([90, 91, 90.5], [80, 81, 80.5], "A", "B")
    assert "one seed" in study_report._verdict([90], [80], "A", "B")


@pytest.mark.slow
def test_quick_study_runs_for_real(tmp_path):
    """The CI smoke test: every kind of cell trains for a few steps on the embedded digits."""
    from armvision.cli import main

    assert main(["study", "--quick", "--output", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == len(plan_cells(StudyPlan.quick()))
    for r in results.values():
        if r["kind"] == "finetune":
            assert 0.0 <= r["top1"] <= 100.0
        else:
            assert r["loss"] > 0 and r["seconds"] > 0
    assert (tmp_path / "REPORT.md").exists() and (tmp_path / "main.png").exists()
