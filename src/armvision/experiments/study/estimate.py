"""`armvision study --estimate`: the plan's compute (CPU hours, or GPU hours with --device cuda) from measured step
times (a few steps of each kind of cell, timed here), printed as a table. Cost of a cell = its steps x the step
time of its kind (+ one evaluation for a finetuning); probes cost one measured probe each; the wall-clock divides
the total by the worker processes."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .cells import cell_missing, run_cell
from .claims import compute_seconds
from .plan import Cell, StudyPlan, arm_variant, finetune_steps_of, method_variant, plan_cells, pretrain_steps_of

StepTimes = Dict[str, float]  # kind -> s / step ("arm", "mae", "contrastive", "vim", "finetune"); "probe": s / run


def _kind(cell: Cell) -> str:
    v = cell.variant
    if cell.kind == "pretrain":
        return "vim" if v.get("block") == "vim" else v.get("method", "arm")
    return cell.kind


def measure_step_times(plan: StudyPlan, steps: int = 12, log: Callable[[str], None] = print) -> StepTimes:
    """Compute seconds per optimizer step of each pretraining kind the plan has and of finetuning, and per probe,
    measured by short runs of real cells on one thread (process CPU time on a CPU, wall-clock on a GPU; the first
    steps, which include start-up, are counted: a slight overestimate)."""
    import torch

    from .runner import prepare_data

    out: StepTimes = {}
    short = dataclasses.replace(plan, seeds=[0], pretrain_steps=steps, finetune_steps=steps,
                                low_label_finetune_steps=steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the study's workers
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            cells = [(k, Cell("pretrain", f"pretrain-{k}", 0, v)) for k, v in (
                ("arm", arm_variant(short)), ("mae", method_variant("mae")),
                ("contrastive", method_variant("contrastive")), ("vim", arm_variant(short, block="vim")))]
            needed = {_kind(c) for c in plan_cells(plan)} | {"arm"}  # the probe starts from ARM's checkpoint
            cells = [(k, c) for k, c in cells if k in needed and not cell_missing(c)]
            cells.append(("finetune", Cell("finetune", "finetune", 0, {}, short.primary_fraction)))
            prepare_data([(short, c) for _, c in cells] + [(short, Cell("probe", "probe", 0, {}))], root)
            for kind, cell in cells:
                out[kind] = compute_seconds(short, run_cell(short, cell, root)) / steps
                log(f"  {kind + (' pretraining' if cell.kind == 'pretrain' else '')}: {out[kind]:.3f} s/step")
            if plan.probe:
                cell = Cell("probe", "probe", 0, arm_variant(short))
                (root / "cells" / str(cell.init_name)).mkdir(parents=True, exist_ok=True)
                (root / "cells" / str(cell.init_name) / "checkpoint-last.pth").write_bytes(
                    (root / "cells" / "pretrain-arm" / "checkpoint-last.pth").read_bytes())
                out["probe"] = compute_seconds(short, run_cell(short, cell, root))
                log(f"  probe: {out['probe']:.1f} s/run")
    finally:
        torch.set_num_threads(threads)
    return out


def estimate(plan: StudyPlan, times: StepTimes, jobs: int = 1) -> Dict[str, float]:
    """Seconds of CPU per kind of cell and in all ("total"), and the wall-clock with `jobs` workers ("wall");
    cells of a kind with no measured time (an option not yet available) are counted in "unmeasured"."""
    out: Dict[str, float] = {"unmeasured": 0.0}
    for cell in plan_cells(plan):
        kind = _kind(cell)
        if kind not in times:
            out["unmeasured"] += 1
            continue
        if cell.kind == "pretrain":
            sec = pretrain_steps_of(plan, cell.variant) * times[kind]
        elif cell.kind == "finetune":
            sec = finetune_steps_of(plan, cell.fraction) * times[kind]
        else:
            sec = times[kind]
        out[kind] = out.get(kind, 0.0) + sec
    out["total"] = sum(v for k, v in out.items() if k != "unmeasured")
    out["wall"] = out["total"] / max(1, jobs)
    return out


def format_estimate(plan: StudyPlan, est: Dict[str, float], jobs: int, times: Optional[StepTimes] = None) -> str:
    """A short text table of an estimate."""
    counts: Dict[str, int] = {}
    for cell in plan_cells(plan):
        counts[_kind(cell)] = counts.get(_kind(cell), 0) + 1
    unit = "GPU hours" if plan.device == "cuda" else "CPU hours"
    lines: List[str] = [f"{'cells':<14}{'count':>7}{'s/step':>9}{unit:>11}"]
    for kind, n in sorted(counts.items()):
        per = f"{times[kind]:.3f}" if times and kind in times else "n/a"
        lines.append(f"{kind:<14}{n:>7}{per:>9}{est.get(kind, 0.0) / 3600:>11.2f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if plan.device == "cpu" and load > (os.cpu_count() or 1):
        lines.append(f"note: load average {load:.1f} on {os.cpu_count()} CPUs while measuring: CPU time is counted "
                     "only while a process runs, but the wall-clock below assumes the cores are free")
    lines.append(f"total: {est['total'] / 3600:.2f} {unit}; with --jobs {jobs}: about {est['wall'] / 3600:.2f} "
                 f"hours wall-clock" + (f" ({est['unmeasured']:.0f} cells not measured: option not available)"
                                        if est["unmeasured"] else ""))
    return "\n".join(lines)
