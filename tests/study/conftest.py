"""The study tests' fixture: cells replaced by deterministic fake results (studykit.fake_result)."""
import pytest

from armvision.experiments.study import cells as study_cells
from armvision.experiments.study import runner as study_runner
from studykit import NO_OPTION, fake_result


@pytest.fixture
def fake_runs(monkeypatch):
    monkeypatch.setattr(study_runner, "run_cell", lambda p, c, r: fake_result(c))
    monkeypatch.setattr(study_cells, "cell_missing", NO_OPTION)
    monkeypatch.setattr(study_runner, "data_info", lambda plan: {"name": "digits", "train": 1497, "val": 300,
                                                                  "note": "no second dataset"})
