"""`armvision study`: a resumable study of ARM's claims on a CPU or a GPU, with enough seeds and statistics to decide.

One primary comparison per claim of the paper, the paper's number beside ours, a paired t-test over >= 5 seeds (the
cells of one seed share its labelled subset and initialisation), TOST for "about equal" claims, Holm's correction
across the claims and a verdict rule fixed before the run (stats.py). The data (splits.py): the shipped MNIST digits
or any ImageFolder, with a held-out test split that judges the claims and a selection split that chose the budgets.
Cells (each one pretraining, finetuning or probe run, per seed):
- main: supervised from scratch vs ARM vs MAE vs contrastive (same backbone, same finetuning), 100 % and 10 % labels;
- ARM ablations, one knob at a time: cluster size, ordering, decoder depth (feature layers held fixed), feature
  layers, block (MambaMLP vs Vim's, matched parameters);
- efficiency: ARM and MAE at several pretraining lengths, finetuned top-1 against measured pretraining compute
  (process CPU time per cell; GPU wall-clock with --device cuda);
- probes: k-NN and linear probe of the main comparison's pretrained encoders.
`--main-only` keeps the main comparison and its probes alone, for the headline claims at longer budgets.

plan.py: the budget and the cells; cells.py: running one (armvision's public entry points); runner.py: running them
all (resumable, optionally in parallel) and results.json; claims.py: the paper's claims and the comparisons;
report.py / plots.py: REPORT.md and pictures from results.json only; curves.py: `--curves`, the measurement that
chooses the budgets; estimate.py: `--estimate`, the plan's CPU time from measured step times.
"""
from .claims import PAPER, derive
from .curves import CurvePlan, run_curves
from .estimate import estimate, format_estimate, measure_step_times
from .plan import Cell, StudyPlan, arm_variant, make_plan, method_variant, plan_cells, pretrain_variants, variant_name
from .report import render, write_report
from .runner import finished_results, load_results, run_cell, run_study
from .stats import holm, mean_std, paired, tost, verdict, welch

__all__ = ["PAPER", "Cell", "CurvePlan", "StudyPlan", "arm_variant", "derive", "estimate", "finished_results",
           "format_estimate", "load_results", "make_plan", "mean_std", "measure_step_times", "method_variant",
           "plan_cells", "pretrain_variants", "render", "run_cell", "run_curves", "run_study", "variant_name",
           "verdict", "welch", "write_report", "holm", "paired", "tost"]
