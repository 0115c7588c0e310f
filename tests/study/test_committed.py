"""The study committed under study/ (the rerun on the shipped MNIST digits) is what the code renders from its
results.json, every number traces there, the command its report records rebuilds the plan it ran, and it ran the
design the report claims: budgets from its curves, >= 5 seeds, a held-out test split, Holm-adjusted verdicts."""
import argparse
import shlex
from pathlib import Path

import pytest

from armvision.cli import study as study_cli
from armvision.experiments import study
from armvision.experiments.study import StudyPlan
from armvision.experiments.study import runner as study_runner
from studykit import number_tokens, traceable

STUDY = Path(__file__).resolve().parents[2] / "study"
COMMITTED = [STUDY]


def _load(root):
    doc = study_runner.load_results(root)
    assert doc is not None, f"{root / 'results.json'} is missing"
    return doc


@pytest.mark.parametrize("root", COMMITTED, ids=lambda p: p.relative_to(STUDY.parent).as_posix())
def test_committed_report_is_generated_from_the_committed_results(root):
    doc = _load(root)
    report = (root / "REPORT.md").read_text()
    assert report == study.render(doc), f"{root}/REPORT.md is stale: run `armvision study --report-only --output " \
                                        f"{root.relative_to(STUDY.parent)}`"
    forms = traceable(doc)
    stray = [t for t in number_tokens(report) if t.lstrip("+-") not in forms]
    assert not stray, f"numbers in {root}/REPORT.md that do not come from its results.json: {stray}"
    for line in report.splitlines():  # every picture the report shows is committed beside it
        if line.startswith("!["):
            assert (root / line[line.index("(") + 1:-1]).exists(), line


@pytest.mark.parametrize("root", COMMITTED, ids=lambda p: p.relative_to(STUDY.parent).as_posix())
def test_recorded_command_rebuilds_the_plan(root):
    doc = _load(root)
    words = shlex.split(doc["meta"]["command"])
    assert words[:2] == ["armvision", "study"]
    parser = argparse.ArgumentParser()
    study_cli.add_arguments(parser)
    assert study_cli.plan_of(parser.parse_args(words[2:])) == StudyPlan(**doc["plan"])


def test_committed_study_is_the_design_the_report_describes():
    """Budgets from its own curves (measured on the selection split), 5 seeds, every test cell evaluated on the
    held-out split, the shipped digits; every primary row decidable, raw and adjusted p side by side."""
    doc = _load(STUDY)
    plan, chosen, data = doc["plan"], doc["curves"], doc["meta"]["data"]
    assert plan["data"] == "embedded:mnist5k" and len(plan["seeds"]) >= 5
    assert plan["pretrain_steps"] == chosen["pretrain_steps"]
    assert plan["low_label_finetune_steps"] == chosen["low_label_finetune_steps"]
    assert (data["fit"], data["selection"], data["test"]) == (3600, 400, 1000)
    ft = [r for r in doc["cells"].values() if r["kind"] == "finetune"]
    assert ft and all(r["evaluated"] == data["test"] for r in ft)
    assert all("cpu_seconds" in r for r in doc["cells"].values())  # every cell timed, contrastive too
    rows = [r for r in study.derive(doc) if r["primary"]]
    assert rows and all(r["n"] >= 5 and r["p_adj"] is not None for r in rows)
    report = (STUDY / "REPORT.md").read_text()
    assert "| p | p (Holm) | detectable | verdict |" in report and "Holm's step-down correction" in report
