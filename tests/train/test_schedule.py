"""Schedules that fit the run (issue 23, item 2) and recipes that fit the data (item 4): timm's scheduler gives the
reference formula's learning rates, warmup scales with --max-steps, a warmup or EMA that does not fit the run is said
in one line before training."""
import json
import logging
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from armvision.train.config import FinetuneConfig, PretrainConfig
from armvision.train.distributed import DistInfo
from armvision.train.engine import Trainer
from armvision.train.optim import build_optimizer, param_groups
from armvision.train.recipe import fit_recipe
from armvision.train.schedule import Warmup, group_lr, lr_at, make_scheduler, plan_warmup

from .conftest import Toy, fit

QUIET = dict(num_workers=0, progress=False, tensorboard=False, log_every=1)


@pytest.mark.parametrize("total,warmup,min_lr", [(100, 10, 0.0), (100, 10, 1e-6), (37, 0, 1e-3), (5, 4, 0.0),
                                                  (3, 3, 0.0), (1, 0, 0.0), (250, 249, 1e-5)])
def test_timm_scheduler_gives_the_reference_learning_rates(total, warmup, min_lr):
    """timm's CosineLRScheduler (what training runs) against the plain formula, in every parameter group (layer
    decay: lr_scale), at every step and past the end."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    groups = param_groups(model, 0.05)
    for g, scale in zip(groups, (1.0, 0.65)):
        g["lr_scale"] = scale
    opt = build_optimizer(groups, 3.75e-4, (0.9, 0.95))
    sched = make_scheduler(opt, total, warmup, min_lr)
    for step in range(total + 3):
        sched.step_update(step)
        want = lr_at(step, total, warmup, 3.75e-4, min_lr)
        for g in opt.param_groups:
            assert math.isclose(g["lr"], want * g["lr_scale"], rel_tol=1e-12, abs_tol=1e-18), (step, g["lr"], want)
        assert math.isclose(group_lr(opt), want, rel_tol=1e-12, abs_tol=1e-18)


def test_no_timm_warning_for_a_one_step_cosine(caplog):
    opt = build_optimizer(param_groups(torch.nn.Linear(2, 2), 0.0), 1e-3, (0.9, 0.95))
    with caplog.at_level(logging.WARNING):
        make_scheduler(opt, 2, 1)
    assert not caplog.records


def test_warmup_scales_with_max_steps_and_says_so():
    # the run: 1600 planned epochs, 40 of warmup, cut to 300 steps -> 2.5 % of 300 steps
    w = plan_warmup(40.0, None, 1600, 8, 300)
    assert w.steps == 8 and "scaled with --max-steps to 8 steps (2.5 % of the run" in w.notes[0] and not w.warnings
    assert plan_warmup(40.0, None, 1600, 8, 1600 * 8).steps == 320  # the planned run: 40 epochs
    # a warmup that is a small part of a shortened run keeps its length (epochs as "no limit", as the study does)
    assert plan_warmup(1.0, None, 100000, 23, 400) == Warmup(23)
    # in steps, as given
    assert plan_warmup(40.0, 12, 1600, 8, 300) == Warmup(12)
    # a warmup longer than the planned run cannot be scaled: a warning
    w = plan_warmup(40.0, None, 10, 8, 80)
    assert w.steps == 80 and "warmup takes 80 of the 80 steps" in w.warnings[0] and "--warmup-steps" in w.warnings[0]
    assert "warmup takes 200 of the 300 steps" in plan_warmup(0, 200, 10, 30, 300).warnings[0]


def test_ema_of_a_short_run_is_fitted_or_warned_about():
    fit = fit_recipe(0.99992, Warmup(8), images=90, effective_batch=16, total=300)
    assert fit.ema_decay == pytest.approx(1 - 10 / 300) and "EMA decay 0.99992 -> 0.9667" in fit.notes[0]
    assert "12,500 steps" in fit.notes[0] and not fit.warnings
    kept = fit_recipe(0.99992, Warmup(8), images=90, effective_batch=16, total=300, fit=False)
    assert kept.ema_decay == 0.99992 and "stay near the initial weights" in kept.warnings[0]
    assert fit_recipe(0.99992, Warmup(8), images=10**6, effective_batch=1024, total=125100).ema_decay == 0.99992
    assert not fit_recipe(None, Warmup(8), 90, 16, 300).notes
    big = fit_recipe(None, Warmup(0), images=90, effective_batch=64, total=100)
    assert "effective batch (64) is more than half of the 90 images: 1 step(s) per epoch, 26 image(s)" \
        in big.warnings[0]


def _steps(tmp_path, caplog, **kw):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(90, 4), torch.zeros(90))
    cfg = PretrainConfig(**{**dict(batch_size=8, epochs=1600, warmup_epochs=40, blr=0.1, output=str(tmp_path)),
                            **QUIET, **kw})
    with caplog.at_level(logging.INFO, logger="armvision"):
        fit(Trainer(cfg, DistInfo(), Toy(), data, lambda m, x, y: m(x).pow(2).mean(),
                    make_groups=lambda m: param_groups(m, 0.0)))
    return [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]


def test_a_short_run_leaves_warmup_and_ends_at_min_lr(tmp_path, caplog):
    """The issue's run: --max-steps 300 of a 1600-epoch recipe ended with the lr still rising. Now it peaks early,
    decays over the run and ends at min_lr; the notice is one line before the first step."""
    log = _steps(tmp_path, caplog, max_steps=300, min_lr=1e-6)
    lrs = [r["lr"] for r in log]
    peak = max(lrs)
    assert lrs.index(peak) <= 10 and peak == pytest.approx(0.1 * 8 / 256, rel=0.05)
    assert lrs[-1] < 0.01 * peak and all(a >= b for a, b in zip(lrs[lrs.index(peak):], lrs[lrs.index(peak) + 1:]))
    lines = [r.getMessage() for r in caplog.records if "recipe" in r.getMessage()]
    assert len(lines) == 1 and "scaled with --max-steps" in lines[0]


def test_finetune_recipe_line_names_the_ema(tmp_path, caplog):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(90, 4), torch.zeros(90))
    cfg = FinetuneConfig(batch_size=8, epochs=3, warmup_epochs=1, output=str(tmp_path), **QUIET)
    with caplog.at_level(logging.INFO, logger="armvision"):
        t = Trainer(cfg, DistInfo(), Toy(), data, lambda m, x, y: m(x).pow(2).mean(),
                    make_groups=lambda m: param_groups(m, 0.0), ema_decay=cfg.ema_decay)
        fit(t)
    assert t.ema.decay == pytest.approx(1 - 10 / 33)
    line = [r for r in caplog.records if "recipe" in r.getMessage()]
    assert len(line) == 1 and "EMA decay 0.99992 -> 0.697" in line[0].getMessage()
    assert line[0].getMessage().startswith("train recipe for 90 images and 33 steps")
