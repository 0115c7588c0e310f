"""The study tests' fixture: cells replaced by deterministic fake results (studykit.fake_result), and the data views
by fixed split sizes (tests/study/test_splits.py writes real ones)."""
import pytest

from armvision.experiments.study import cells as study_cells
from armvision.experiments.study import curves as study_curves
from armvision.experiments.study import runner as study_runner
from studykit import NO_OPTION, SIZES, fake_result


@pytest.fixture
def fake_runs(monkeypatch):
    monkeypatch.setattr(study_runner, "run_cell", lambda p, c, r: fake_result(c))
    monkeypatch.setattr(study_cells, "cell_missing", NO_OPTION)
    for module in (study_runner, study_curves):
        monkeypatch.setattr(module, "prepare_data", lambda tasks, root: dict(SIZES))
