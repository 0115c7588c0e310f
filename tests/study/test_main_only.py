"""`armvision study --main-only --methods ... --label-fractions ... --low-label-finetune-steps ...`: the headline
claims alone, at budgets the full plan cannot afford; bad values are refused with one message naming them."""
import pytest

from armvision.cli import main
from armvision.errors import ConfigError
from armvision.experiments import study
from armvision.experiments.study import make_plan, plan_cells
from studykit import study_doc


def _focused(**kw):
    return make_plan(main_only=True, methods=["arm", "mae"], label_fractions=[0.1], pretrain_steps=1600,
                     low_label_finetune_steps=800, **kw)


def test_main_only_plan_holds_the_main_comparison_and_probes():
    plan = _focused()
    cells = plan_cells(plan)
    assert {c.group for c in cells} == {"main", "probe"}
    per_seed = sorted(c.name.rsplit("-s", 1)[0] for c in cells if c.seed == 0)
    assert per_seed == ["finetune-arm-c3-row-d4-f0.1", "finetune-mae-f0.1", "finetune-scratch-f0.1",
                        "pretrain-arm-c3-row-d4", "pretrain-mae", "probe-arm-c3-row-d4", "probe-mae"]
    assert len(cells) == 7 * len(plan.seeds) and len(plan.seeds) >= 5
    assert plan.pretrain_steps == 1600 and study.plan.finetune_steps_of(plan, 0.1) == 800
    assert study.plan.finetune_steps_of(plan, 1.0) == make_plan().finetune_steps  # all labels: unchanged


def test_main_only_report_has_verdicts_and_no_efficiency_section(tmp_path, fake_runs):
    doc = study_doc(tmp_path, _focused())
    assert {r["key"] for r in study.derive(doc)} == {"scratch_low", "mae", "probe"}
    text = (tmp_path / "REPORT.md").read_text()
    assert "## Efficiency" not in text and "efficiency.png" not in text
    assert (tmp_path / "main.png").exists() and not (tmp_path / "efficiency.png").exists()
    assert "ARM vs from scratch, 10% labels" in text and "supported" in text


@pytest.mark.parametrize("kw, named", [
    (dict(methods=["mae", "contrastive"]), "--methods mae contrastive"),
    (dict(methods=["arm", "byol"]), "byol"),
    (dict(label_fractions=[0.1, 0.0]), "--label-fractions 0.1 0"),
    (dict(label_fractions=[1.5]), "1.5"),
])
def test_bad_study_options_are_refused_by_name(kw, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        make_plan(**kw)


def test_bad_methods_on_the_command_line_exit_2_with_one_line(capsys):
    assert main(["study", "--methods", "arm", "byol", "--estimate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "byol" in err[0]
