"""`armvision study`: a small, resumable study of ARM's claims that runs on a CPU.

Cells (each one pretraining or finetuning run, several seeds):
- main: supervised from scratch vs ARM-pretrained vs MAE-pretrained (same backbone, same finetuning recipe), with all
  labels and with a fraction of them;
- ARM ablations: cluster size, cluster ordering, decoder depth (one knob at a time from the reference defaults);
- cost: pretraining wall-clock per epoch and per image, ARM vs MAE, from the same runs.

Every finished cell leaves `result.json` in its folder and is not rerun; an interrupted cell resumes from its last
checkpoint. `REPORT.md`, `results.json` and the plots are rewritten from all finished cells at the end.

plan.py: the budget and the cells; runner.py: running them (armvision.train's public entry points); report.py:
REPORT.md and the plots. Everything here uses armvision's public API only.
"""
from .plan import Cell, StudyPlan, arm_variant, make_plan, plan_cells, pretrain_variants, variant_name
from .report import mean_std, write_report
from .runner import finished_results, run_cell, run_study

__all__ = ["Cell", "StudyPlan", "arm_variant", "finished_results", "make_plan", "mean_std", "plan_cells", "pretrain_variants",
           "run_cell", "run_study", "variant_name", "write_report"]
