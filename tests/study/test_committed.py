"""The studies committed under study/ (the full plan, and study/long: the headline claims at the budgets the curves
chose) are what the code renders from their results.json, every number traces there, and the command each report
records rebuilds the plan it ran."""
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
COMMITTED = [STUDY, STUDY / "long"]


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


def test_long_study_is_the_main_comparison_at_the_chosen_budgets():
    """study/long ran the budgets the curves chose: the longest pretraining measured, and 10 %-label finetuning at
    the length the curves chose for it; 5 seeds a side, so it draws verdicts."""
    doc = _load(STUDY / "long")
    plan, chosen = doc["plan"], doc["curves"]
    assert plan["pretrain_steps"] == chosen["pretrain_steps"] > _load(STUDY)["plan"]["pretrain_steps"]
    assert plan["low_label_finetune_steps"] == chosen["low_label_finetune_steps"]
    assert {r["group"] for r in doc["cells"].values()} == {"main", "probe"}
    rows = study.derive(doc)
    assert rows and all(len(r["a"]) >= 5 and len(r["b"]) >= 5 for r in rows)
