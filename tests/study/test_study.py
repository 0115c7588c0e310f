import dataclasses
import json

import pytest

from armvision.errors import ConfigError
from armvision.experiments import study
from armvision.experiments.study import StudyPlan, make_plan, plan_cells, run_study
from armvision.experiments.study import cells as study_cells
from armvision.experiments.study import runner as study_runner
from studykit import NO_OPTION, fake_result, number_tokens, study_doc, traceable


def test_plan_has_five_seeds_and_runs_pretraining_first():
    plan = StudyPlan()
    assert len(plan.seeds) >= 5
    cells = plan_cells(plan)
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    pre = {c.name for c in cells if c.kind == "pretrain"}
    for c in cells:
        if c.kind != "pretrain" and c.init_name:
            assert c.init_name in pre and names.index(c.init_name) < names.index(c.name)


def test_tiny_model_settings_come_from_the_preset():
    import yaml
    from importlib import resources

    cfg = yaml.safe_load(resources.files("armvision").joinpath("configs", "study_tiny.yaml").read_text())
    plan = StudyPlan()
    assert (plan.embed_dim, plan.depth, plan.img_size, plan.patch_size, plan.batch_size, plan.default_cluster,
            plan.data) == (cfg["model"]["embed_dim"], cfg["model"]["depth"], cfg["model"]["img_size"],
                           cfg["model"]["patch_size"], cfg["batch_size"], cfg["model"]["cluster_size"], cfg["data"])
    grid = plan.img_size // plan.patch_size
    assert grid % plan.default_cluster == 0 and (grid // plan.default_cluster) ** 2 >= 9  # 9 clusters, as the paper


def test_decoder_depth_axis_holds_feature_layers_fixed():
    plan = StudyPlan()
    names = {study.variant_name(v) for v in study.pretrain_variants(plan)}
    last = plan.depth
    for d in plan.decoder_depths:
        assert f"arm-c3-row-d{d}-fl{str(last) * d}" in names  # every depth reads the same (last) encoder layer
    assert "arm-c3-row-d4-vim" in names and "contrastive" in names and "mae-p1.7" in names


def test_every_comparison_has_five_seeds_a_side(tmp_path, fake_runs):
    rows = study.derive(study_doc(tmp_path))
    keys = {r["key"] for r in rows}
    assert {"scratch", "scratch_low", "mae", "contrastive", "cluster", "order_column", "order_random", "decoder_depth",
            "feature_layers", "block", "block_arm", "efficiency", "probe"} <= keys
    for r in rows:
        assert len(r["a"]) == 5 and len(r["b"]) == 5, r["label"]
        assert r["verdict"] in ((study.stats.SUPPORTED, study.stats.CONTRADICTED, study.stats.INCONCLUSIVE)
                                if r["primary"] else ("secondary (no verdict)",))
    assert sorted(r["key"] for r in rows if r["primary"]) == sorted(keys)  # one primary comparison per claim
    scratch = next(r for r in rows if r["key"] == "scratch")
    assert scratch["verdict"] == "supported" and scratch["test"].kind == "paired"  # fake ARM: 10 points above


def test_efficiency_rule_gives_mae_at_least_arms_cpu_time(tmp_path, fake_runs):
    row = next(r for r in study.derive(study_doc(tmp_path)) if r["key"] == "efficiency")
    assert "mae x1.7" in row["label"].lower()  # MAE x1 (2 CPU s) < ARM (3 CPU s) <= MAE x1.7 (3.4 CPU s)
    assert "(3 CPU s pretraining)" in row["label"]  # CPU seconds, not the (ten times longer) wall-clock
    plan = StudyPlan(mae_lengths=[1.0, 1.2])  # no MAE length reaches ARM's compute: the label says so
    row = next(r for r in study.derive(study_doc(tmp_path / "short", plan)) if r["key"] == "efficiency")
    assert "mae x1.2" in row["label"].lower() and "less than ARM's" in row["label"]


def test_every_number_in_the_report_comes_from_results_json(tmp_path, fake_runs):
    doc = study_doc(tmp_path)
    report = (tmp_path / "REPORT.md").read_text()
    assert report == study.render(doc)  # the report is a function of results.json alone
    doc["curves"] = {"finetune": {"f1": {"steps": 100, "converged": True,
                                         "points": [[50, 61.25], [100, 80.5], [200, 81.0]]}},
                     "pretrain": {"arm": {"steps": 800, "converged": False,
                                          "points": [[400, 0.4063], [800, 0.3712]]}},
                     "pretrain_steps": 800, "finetune_steps": 100, "pretrain_converged": False,
                     "finetune_converged": True}
    report = study.render(doc)
    assert "61.25" in report and "pretraining: 800 steps, the rule chose 800 (not converged" in report
    assert "finetuning with all labels: 400 steps, the rule chose 100 (converged)" in report
    assert "a fraction of the labels" not in report.split("## Budgets")[1].split("![curves]")[0]  # not measured
    forms = traceable(doc)
    stray = [t for t in number_tokens(report) if t.lstrip("+-") not in forms]
    assert not stray, f"numbers in REPORT.md that do not come from results.json: {stray}"
    assert "supported" in report and "83.2 vs 81.2" in report  # the paper's number beside ours
    # a changed result changes the report
    cell = next(k for k, r in doc["cells"].items() if r["kind"] == "finetune" and r["variant"] == "scratch")
    doc["cells"][cell]["top1"] = 12.345
    assert study.render(doc) != report


def test_quick_plan_draws_no_verdicts(tmp_path, fake_runs):
    doc = study_doc(tmp_path, StudyPlan.quick())
    text = (tmp_path / "REPORT.md").read_text()
    assert "no verdicts are drawn" in text
    assert all(r["verdict"].startswith("no verdict") for r in study.derive(doc) if r["a"] and r["b"] and r["primary"])


def test_missing_option_is_skipped_then_run_once_it_exists(tmp_path, fake_runs, monkeypatch):
    plan = StudyPlan.quick()
    missing = lambda cell: "method=\"contrastive\" is not available" if cell.variant.get("method") == "contrastive" \
        else None  # noqa: E731
    monkeypatch.setattr(study_cells, "cell_missing", missing)
    doc = study_doc(tmp_path, plan)
    assert doc["skipped"] and all("contrastive" in n for n in doc["skipped"])
    assert "## Not run" in (tmp_path / "REPORT.md").read_text()
    calls = []
    monkeypatch.setattr(study_cells, "cell_missing", NO_OPTION)
    monkeypatch.setattr(study_runner, "run_cell", lambda p, c, r: calls.append(c.name) or fake_result(c))
    study_doc(tmp_path, plan)
    assert sorted(calls) == sorted(doc["skipped"])  # only the skipped cells run on the next invocation


def test_option_missing_names_the_option():
    why = study_cells.option_missing("no-such-method")
    assert why and 'method="no-such-method"' in why
    assert study_cells.option_missing("arm") is None


def test_cells_resume_after_interruption(tmp_path, fake_runs, monkeypatch):
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
    assert len(json.loads((tmp_path / "results.json").read_text())["cells"]) == len(plan_cells(plan))
    n = len(calls)
    run_study(plan, tmp_path)  # a third run does nothing at all
    assert len(calls) == n


def test_changed_plan_is_refused_and_a_growing_one_keeps_its_cells(tmp_path, fake_runs, monkeypatch):
    small = make_plan(main_only=True, methods=["arm", "mae"], label_fractions=[0.1])
    run_study(small, tmp_path)
    with pytest.raises(ConfigError, match="another plan .*pretrain_steps differ"):
        run_study(dataclasses.replace(small, pretrain_steps=99), tmp_path)
    calls = []
    monkeypatch.setattr(study_runner, "run_cell", lambda p, c, r: calls.append(c.name) or fake_result(c))
    grown = make_plan(methods=["arm", "mae", "contrastive"], label_fractions=[0.1], ablations=["none"],
                      mae_lengths=[1.0, 1.7])  # contrastive and the efficiency cells added, nothing else changed
    doc = run_study(grown, tmp_path)
    assert calls and all("contrastive" in n or "mae-p1.7" in n for n in calls)  # only the new cells ran
    assert len(doc["cells"]) == len(plan_cells(grown)) and json.loads((tmp_path / "plan.json").read_text()) == \
        dataclasses.asdict(grown)


def test_estimate_adds_up_measured_step_times():
    plan = StudyPlan(low_label_finetune_steps=100)
    times = {"arm": 0.25, "mae": 0.2, "finetune": 0.5, "probe": 10.0}  # no contrastive, no vim measured
    est = study.estimate(plan, times, jobs=2)
    cells = plan_cells(plan)
    ft_steps = sum(study.plan.finetune_steps_of(plan, c.fraction) for c in cells if c.kind == "finetune")
    assert ft_steps < sum(plan.finetune_steps for c in cells if c.kind == "finetune")  # fewer steps with 10 % labels
    assert est["finetune"] == pytest.approx(ft_steps * 0.5)
    assert est["probe"] == pytest.approx(10.0 * sum(c.kind == "probe" for c in cells))
    assert est["unmeasured"] == 2 * len(plan.seeds)  # the contrastive and vim pretrainings
    arm_steps = sum(study.plan.pretrain_steps_of(plan, c.variant) for c in cells
                    if c.kind == "pretrain" and c.variant.get("method") == "arm" and not c.variant.get("block"))
    assert est["arm"] == pytest.approx(arm_steps * 0.25)
    assert est["wall"] == pytest.approx(est["total"] / 2)
    assert "CPU hours" in study.format_estimate(plan, est, 2, times)


def test_plateau_rule():
    from armvision.experiments.study.curves import plateau

    assert plateau([(50, 60.0), (100, 80.0), (200, 85.0), (400, 85.5)], 1.0, False) == (200, True)
    assert plateau([(50, 60.0), (100, 80.0)], 1.0, False) == (100, False)  # still rising: not converged
    assert plateau([(100, 1.0), (200, 0.8), (400, 0.79)], 0.02, True) == (200, True)


@pytest.mark.slow
def test_quick_study_runs_for_real(tmp_path):
    """The CI smoke test: every kind of cell trains for a few steps on the embedded digits."""
    from armvision.cli import main

    assert main(["study", "--quick", "--jobs", "2", "--output", str(tmp_path)]) == 0  # two worker processes
    doc = json.loads((tmp_path / "results.json").read_text())
    assert len(doc["cells"]) + len(doc["skipped"]) == len(plan_cells(StudyPlan.quick()))
    for r in doc["cells"].values():
        if r["kind"] == "finetune":
            assert 0.0 <= r["top1"] <= 100.0
        elif r["kind"] == "pretrain":
            assert r["loss"] > 0 and r["seconds"] > 0 and (r["step_seconds"] is None or r["step_seconds"] > 0)
        else:
            assert 0.0 <= r["knn"] <= 100.0 and 0.0 <= r["linear"] <= 100.0
    assert any(r.get("step_seconds") for r in doc["cells"].values())  # 8 steps, logged every 5: one rate
    assert (tmp_path / "REPORT.md").exists() and (tmp_path / "main.png").exists()
    assert (tmp_path / "efficiency.png").exists()
    assert main(["study", "--quick", "--output", str(tmp_path), "--report-only"]) == 0


@pytest.mark.slow
def test_quick_curves_choose_budgets(tmp_path):
    from armvision.experiments.study.curves import CurvePlan, run_curves

    doc = run_curves(StudyPlan.quick(), CurvePlan.quick(), tmp_path)
    assert doc["choice"]["finetune_steps"] in (4, 8) and doc["choice"]["pretrain_steps"] in (4, 8)
    assert doc["choice"]["finetune"]["f1"]["points"][0][0] == 4
    assert (tmp_path / "curves" / "curves.png").exists() and (tmp_path / "curves" / "CURVES.md").exists()


def test_curves_markdown_names_only_the_budgets_measured():
    from armvision.experiments.study.curves import curves_markdown
    doc = {"curve_plan": {"acc_tol": 1.0, "loss_tol": 0.02, "seeds": [0]},
           "choice": {"finetune": {}, "pretrain": {}, "pretrain_steps": 800, "pretrain_converged": True,
                      "low_label_finetune_steps": 400, "low_label_finetune_converged": True}}
    text = curves_markdown(doc)
    assert "Chosen: pretraining 800 steps, finetuning with a fraction of the labels 400 steps." in text
    assert "None" not in text and "all labels" not in text


def test_step_seconds_ignore_the_gap_of_a_resume(tmp_path):
    log = tmp_path / "log.jsonl"
    times = [(5, 0.0), (10, 1.0), (15, 2.0), (20, 100.0), (25, 101.0)]  # killed after step 15, resumed much later
    log.write_text("".join(json.dumps({"kind": "train", "step": s, "time": t, "loss": 1.0}) + "\n" for s, t in times)
                   + json.dumps({"kind": "val", "step": 25, "time": 102.0}) + "\n")
    assert study_cells.step_seconds(log) == pytest.approx(0.2)


def test_curves_choose_by_the_plateau_rule_and_grow_without_rerunning(tmp_path, fake_runs, monkeypatch):
    from armvision.experiments.study.curves import CurvePlan, run_curves

    calls = []

    def fake(plan, cell, root):
        calls.append(cell.name)
        if cell.kind == "pretrain":
            n = plan.pretrain_steps  # loss 1 + 100/n: flat (< 2 %) from 3200 steps on
            out = root / "cells" / cell.name
            out.mkdir(parents=True, exist_ok=True)
            (out / "log.jsonl").write_text("".join(json.dumps({"kind": "train", "step": s, "time": s, "loss":
                                                               1.0 + 100.0 / n}) + "\n" for s in range(5, n + 1, 5)))
            return {"loss": 1.0, "seconds": 1.0, "images": 1, "steps": n}
        return {"top1": min(95.0, plan.finetune_steps / 4), "top5": 99.0, "seconds": 1.0}  # flat from 380 steps

    monkeypatch.setattr(study_runner, "run_cell", fake)
    monkeypatch.setattr(study_cells, "cell_missing", NO_OPTION)
    small = CurvePlan(finetune_lengths=[100, 200, 400], pretrain_lengths=[800, 1600], fractions=[1.0], methods=["arm"])
    doc = run_curves(StudyPlan(), small, tmp_path, draw=False)
    assert doc["choice"]["finetune_steps"] == 400 and doc["choice"]["finetune_converged"] is False
    assert doc["choice"]["pretrain_steps"] == 1600 and doc["choice"]["pretrain_converged"] is False
    n = len(calls)
    grown = CurvePlan(finetune_lengths=[100, 200, 400, 800], pretrain_lengths=[800, 1600, 3200, 6400],
                      fractions=[1.0], methods=["arm"])
    doc = run_curves(StudyPlan(), grown, tmp_path, draw=False)
    assert len(calls) == n + 3  # only the new lengths ran
    assert (doc["choice"]["finetune_steps"], doc["choice"]["finetune_converged"]) == (400, True)
    assert (doc["choice"]["pretrain_steps"], doc["choice"]["pretrain_converged"]) == (3200, True)
    with pytest.raises(ConfigError, match="another plan"):
        run_curves(StudyPlan(embed_dim=64), grown, tmp_path, draw=False)


def test_report_only_refuses_results_of_the_earlier_format(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"finetune-mae-f1-s0": {"top1": 50.0}}))
    with pytest.raises(ConfigError, match="earlier version"):
        study.load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"plan": {"seeds": [0]}, "cells": {}}))  # no held-out split
    with pytest.raises(ConfigError, match="earlier version"):
        study.load_results(tmp_path)
    assert study.load_results(tmp_path / "none") is None


def test_vim_depth_matches_the_parameter_count():
    assert study_cells.option_missing("arm", "vim") is None  # the study's Vim cells need it
    import dataclasses

    from armvision.models import build_model
    from armvision.fields import config_from_dict
    from armvision.train import PretrainConfig

    plan = StudyPlan()

    def params(block, depth):
        cfg = config_from_dict(PretrainConfig, dict(
            model="tiny", embed_dim=plan.embed_dim, depth=depth, img_size=plan.img_size, patch_size=plan.patch_size,
            cluster_size=plan.default_cluster, decoder_embed_dim=plan.decoder_embed_dim, block=block))
        return sum(p.numel() for p in build_model(cfg.model).parameters())

    d = study_cells.vim_depth(plan)
    target = params("mambamlp", plan.depth)
    assert d > plan.depth  # Vim's block has no MLP: more blocks for the same parameters
    assert abs(params("vim", d) - target) <= min(abs(params("vim", d + k) - target) for k in (-1, 1))
    assert abs(params("vim", d) - target) < 0.1 * target
    assert study_cells.vim_depth(dataclasses.replace(plan, seeds=[0])) == d


def test_progress_lines_count_cells_and_give_an_eta(tmp_path, fake_runs):
    plan = StudyPlan.quick()
    lines = []
    run_study(plan, tmp_path, log=lines.append)
    done = [ln for ln in lines if ln.startswith("[")]
    n = len(plan_cells(plan))
    assert len(done) == n and done[0].startswith(f"[1/{n}] ") and done[-1].startswith(f"[{n}/{n}] ")
    assert all(" -> " in ln and ", elapsed " in ln and ", ETA " in ln for ln in done)
    assert done[-1].endswith("ETA 0:00:00")
    lines.clear()
    run_study(plan, tmp_path, log=lines.append)  # nothing left: no progress lines
    assert lines[0].startswith(f"{n} cells done earlier, 0 to run") and not [ln for ln in lines if ln.startswith("[")]


def test_clock_counts_process_cpu_time_not_waiting(tmp_path):
    """A cell's compute is process CPU time: waiting (a loaded machine, a SIGSTOP from a benchmark) adds none."""
    import time

    clock = study_cells.Clock()
    time.sleep(0.3)
    sum(i * i for i in range(200_000))
    res = clock.result()
    assert res["seconds"] >= 0.3 and 0 < res["cpu_seconds"] < 0.2 and "resumed" not in res
    log = tmp_path / "log.jsonl"  # a cell interrupted after 30 of its 120 steps: this process ran 90 of them
    log.write_text("".join(json.dumps({"kind": "train", "step": s, "time": s, "loss": 1.0}) + "\n"
                           for s in (10, 20, 30)))
    clock = study_cells.Clock(log, steps=120)
    sum(i * i for i in range(200_000))
    res = clock.result()
    assert res["resumed"] and res["cpu_seconds"] == pytest.approx((time.process_time() - clock.cpu) * 120 / 90,
                                                                   rel=0.2)


def test_parallel_cells_start_after_their_pretraining_and_seeds_finish_in_turn(tmp_path, fake_runs, monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    class Pool(ThreadPoolExecutor):  # threads stand in for the worker processes, so the fake cells can be watched
        def __init__(self, jobs, mp_context=None, initializer=None):
            super().__init__(jobs)

    events, lock, busy = [], threading.Lock(), [0, 0]

    def job(plan, cell, root):
        with lock:
            events.append(("start", cell.name))
            busy[0] += 1
            busy[1] = max(busy[1], busy[0])
        time.sleep(0.02 if cell.kind == "pretrain" else 0.005)
        with lock:
            events.append(("end", cell.name))
            busy[0] -= 1
        return study_runner._finish(cell, fake_result(cell), root)

    monkeypatch.setattr(study_runner, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(study_runner, "_run_and_finish", job)
    plan = StudyPlan.quick(seeds=[0, 1])
    run_study(plan, tmp_path, jobs=2)
    cells = plan_cells(plan)
    assert busy[1] == 2 and len(events) == 2 * len(cells)
    for c in cells:
        if c.init_name:
            assert events.index(("end", c.init_name)) < events.index(("start", c.name)), c.name
    first_ft = min(events.index(("start", c.name)) for c in cells if c.seed == 0 and c.kind == "finetune")
    last_pre = max(events.index(("start", c.name)) for c in cells if c.seed == 1 and c.kind == "pretrain")
    assert first_ft < last_pre  # seed 0 is finetuned while seed 1 still pretrains: an interrupted run keeps whole seeds
