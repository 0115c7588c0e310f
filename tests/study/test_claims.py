"""The claims table: one primary comparison per claim, paired tests where the seeds match (Welch where they do not),
Holm's correction across the primary rows, verdicts from the adjusted p, TOST for "about equal", and a report that
shows raw and adjusted p side by side."""
import pytest

from armvision.experiments import study
from armvision.experiments.study import StudyPlan, make_plan
from armvision.experiments.study import runner as study_runner
from studykit import fake_result, study_doc

PLAN = dict(methods=["arm", "mae"], label_fractions=[0.1], ablations=["order"], arm_lengths=[1.0], mae_lengths=[1.0],
            probe=False)


def _plan(**kw):
    probe = kw.pop("probe", PLAN["probe"])
    plan = make_plan(**{**{k: v for k, v in PLAN.items() if k != "probe"}, **kw})
    return StudyPlan(**{**plan.__dict__, "probe": probe})


def _run(tmp_path, monkeypatch, top1, plan=None):
    """A study whose finetuned top-1 is top1(variant label, seed)."""
    def fake(p, cell, root):
        r = fake_result(cell)
        if cell.kind == "finetune":
            r["top1"] = top1(cell.label, cell.seed)
        return r

    monkeypatch.setattr(study_runner, "run_cell", fake)
    return study_doc(tmp_path, plan or _plan())


def _row(doc, key):
    return next(r for r in study.derive(doc) if r["key"] == key and r["primary"])


SHARED = [3.0, -2.0, 1.0, -1.5, 0.5]  # what one seed's subset and initialisation add to every method alike


def test_matched_seeds_are_tested_paired(tmp_path, fake_runs, monkeypatch):
    gain = [0.6, 0.4, 0.5, 0.7, 0.5]
    doc = _run(tmp_path, monkeypatch, lambda label, s: 80 + SHARED[s] + (gain[s] if label.startswith("arm-c3-row")
                                                                          else 0.0))
    row = _row(doc, "scratch_low")
    assert row["test"].kind == "paired" and row["test"].df == 4
    assert row["test"].diff == pytest.approx(0.54) and row["p"] < 1e-3  # Welch would drown it in the seeds' spread
    assert study.welch(row["a"], row["b"]).p > 0.5


def test_unmatched_seeds_fall_back_to_welch(tmp_path, fake_runs, monkeypatch):
    doc = _run(tmp_path, monkeypatch, lambda label, s: 80 + s + (2.0 if label != "scratch" else 0.0))
    gone = next(k for k, r in doc["cells"].items() if r["kind"] == "finetune" and r["variant"] == "scratch"
                and r["seed"] == 4)
    del doc["cells"][gone]
    row = _row(doc, "scratch_low")
    assert row["test"].kind == "welch" and len(row["b"]) == 4
    assert row["verdict"].startswith("no verdict")  # 4 seeds on one side: no verdict, and not in the family
    assert "| welch |" in study.render(doc)


def test_holm_decides_and_a_raw_p_alone_does_not(tmp_path, fake_runs, monkeypatch):
    """Four primary rows (scratch_low, mae, order_column, order_random, efficiency share ARM's cells): a row whose raw
    p is below 0.05 but whose adjusted p is not is inconclusive."""
    noise = [0.4, -0.4, 0.3, -0.3, 0.0]  # ARM - MAE = 0.5 + noise: paired p about 0.034

    def top1(label, s):
        base = 80 + SHARED[s]
        return {"scratch": base - 5 + noise[s], "mae": base - 0.5 - noise[s]}.get(label, base)

    doc = _run(tmp_path, monkeypatch, top1)
    rows = [r for r in study.derive(doc) if r["primary"]]
    family = [r for r in rows if r["p_adj"] is not None]
    assert len(family) == len(rows) >= 4
    assert study.stats.holm([r["p"] for r in family]) == [r["p_adj"] for r in family]
    mae = _row(doc, "mae")
    assert mae["p"] < 0.05 <= mae["p_adj"] and mae["verdict"] == study.stats.INCONCLUSIVE
    assert _row(doc, "scratch_low")["verdict"] == study.stats.SUPPORTED
    text = study.render(doc)
    assert "| p | p (Holm) |" in text and "Holm's step-down correction" in text
    line = next(ln for ln in text.splitlines() if "| ARM vs MAE, 10% labels |" in ln)
    assert f"| {mae['p']:.3f} | {mae['p_adj']:.3f} |" in line  # raw and adjusted side by side


def test_about_equal_claim_is_tested_for_equivalence(tmp_path, fake_runs, monkeypatch):
    wobble = [0.1, -0.1, 0.05, 0.0, -0.05]

    def top1(label, s):
        return 85 + SHARED[s] + (wobble[s] if label == "arm-c3-column-d4" else 0.0)

    doc = _run(tmp_path, monkeypatch, top1)
    row = _row(doc, "order_column")
    assert row["direction"] == 0 and row["equivalent"] and row["verdict"] == study.stats.SUPPORTED
    assert "TOST ±1 (paired)" in study.render(doc)


def test_one_primary_row_per_claim_and_secondary_rows_are_not_judged(tmp_path, fake_runs):
    doc = study_doc(tmp_path, _plan(label_fractions=[1.0, 0.1], ablations=["cluster", "decoder"], probe=True,
                                    methods=["arm", "mae", "contrastive"]))
    rows = study.derive(doc)
    primary = [r for r in rows if r["primary"]]
    assert len({r["key"] for r in primary}) == len(primary) == len({r["key"] for r in rows})
    chosen = {r["key"]: r["label"] for r in primary}
    assert chosen["mae"] == "ARM vs MAE, 10% labels" and chosen["cluster"] == "cluster 3x3 vs 1x1"
    assert chosen["decoder_depth"].startswith("decoder depth 4 vs 1") and chosen["probe"] == "linear probe: ARM vs MAE"
    for r in rows:
        if not r["primary"]:
            assert r["p_adj"] is None and r["verdict"] == "secondary (no verdict)"
    text = study.render(doc)
    assert "## Secondary comparisons (shown, not judged)" in text
    assert doc["paper"]["mae"]["primary"] and doc["rule"]["correction"] == "Holm"  # declared in results.json
