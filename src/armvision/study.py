"""`armvision study`: a small, resumable study of ARM's claims that runs on a CPU.

Cells (each one pretraining or finetuning run, several seeds):
- main: supervised from scratch vs ARM-pretrained vs MAE-pretrained (same backbone, same finetuning recipe), with all
  labels and with a fraction of them;
- ARM ablations: cluster size, cluster ordering, decoder depth (one knob at a time from the reference defaults);
- cost: pretraining wall-clock per epoch and per image, ARM vs MAE, from the same runs.

Every finished cell leaves `result.json` in its folder and is not rerun; an interrupted cell resumes from its last
checkpoint. `REPORT.md`, `results.json` and the plots are rewritten from all finished cells at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from .errors import ConfigError


@dataclass
class StudyPlan:
    """The fixed budget of the study. Defaults: about an hour on 2 CPU cores; `quick()` for a smoke test."""

    data: Optional[str] = None  # ImageFolder root; None = the embedded digits
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    ablation_seeds: List[int] = field(default_factory=lambda: [0, 1])
    label_fractions: List[float] = field(default_factory=lambda: [1.0, 0.1])
    ablation_fraction: float = 0.1  # ablations are finetuned with this fraction of the labels
    img_size: int = 32
    patch_size: int = 4  # 32 px / 4 = 8x8 patches: clusters of 1x1, 2x2 and 4x4 patches all fit
    embed_dim: int = 48
    depth: int = 4
    decoder_embed_dim: int = 48
    batch_size: int = 64
    pretrain_steps: int = 200
    finetune_steps: int = 50
    pretrain_blr: float = 1e-2  # the demo's tuned rates for this tiny model (lr = blr * batch / 256)
    finetune_blr: float = 2e-2
    cluster_sizes: List[int] = field(default_factory=lambda: [1, 2, 4])
    orderings: List[str] = field(default_factory=lambda: ["row", "column", "random"])
    decoder_depths: List[int] = field(default_factory=lambda: [1, 2, 4])
    default_cluster: int = 4  # the reference defaults: 4x4-patch clusters, row order, 4 decoder blocks
    default_ordering: str = "row"
    default_decoder_depth: int = 4

    @classmethod
    def quick(cls, **kw: Any) -> "StudyPlan":
        small = dict(seeds=[0], ablation_seeds=[0], label_fractions=[1.0, 0.1], embed_dim=32, depth=2,
                     decoder_embed_dim=32, batch_size=32, pretrain_steps=8, finetune_steps=6,
                     cluster_sizes=[1, 4], orderings=["row", "random"], decoder_depths=[1, 4])
        small.update(kw)
        return cls(**small)


def arm_variant(plan: StudyPlan, cluster: Optional[int] = None, ordering: Optional[str] = None,
                decoder_depth: Optional[int] = None) -> Dict[str, Any]:
    return {"cluster_size": cluster or plan.default_cluster, "ordering": ordering or plan.default_ordering,
            "decoder_depth": decoder_depth or plan.default_decoder_depth}


def variant_name(v: Dict[str, Any]) -> str:
    if v.get("method") == "mae":
        return "mae"
    return f"arm-c{v['cluster_size']}-{v['ordering']}-d{v['decoder_depth']}"


def pretrain_variants(plan: StudyPlan) -> List[Dict[str, Any]]:
    """The default ARM model first, then each one-knob ablation once, then MAE."""
    out = [arm_variant(plan)]
    out += [arm_variant(plan, cluster=k) for k in plan.cluster_sizes]
    out += [arm_variant(plan, ordering=o) for o in plan.orderings]
    out += [arm_variant(plan, decoder_depth=d) for d in plan.decoder_depths]
    out.append({"method": "mae"})
    unique: Dict[str, Dict[str, Any]] = {}
    for v in out:
        unique.setdefault(variant_name(v), v)
    return list(unique.values())


@dataclass
class Cell:
    kind: str  # "pretrain" or "finetune"
    name: str  # folder name under cells/
    seed: int
    variant: Dict[str, Any]  # pretraining variant (for finetune: of its init; {} = from scratch)
    fraction: float = 1.0
    group: str = "main"  # "main" or "ablation"

    @property
    def init_name(self) -> Optional[str]:
        return f"pretrain-{variant_name(self.variant)}-s{self.seed}" if self.variant else None


def plan_cells(plan: StudyPlan) -> List[Cell]:
    """All cells in run order (each pretraining before the finetunings that start from it)."""
    default, mae = arm_variant(plan), {"method": "mae"}
    cells: List[Cell] = []
    for seed in sorted(set(plan.seeds) | set(plan.ablation_seeds)):
        variants = [default, mae] if seed in plan.seeds else []
        if seed in plan.ablation_seeds:
            variants += [v for v in pretrain_variants(plan) if v not in variants]
        for v in variants:
            cells.append(Cell("pretrain", f"pretrain-{variant_name(v)}-s{seed}", seed, v))
        if seed in plan.seeds:
            for frac in plan.label_fractions:
                for v, label in (({}, "scratch"), (default, variant_name(default)), (mae, "mae")):
                    cells.append(Cell("finetune", f"finetune-{label}-f{frac:g}-s{seed}", seed, v, frac))
        if seed in plan.ablation_seeds:
            for v in pretrain_variants(plan):
                if v == mae or (v == default and seed in plan.seeds and plan.ablation_fraction in plan.label_fractions):
                    continue
                cells.append(Cell("finetune", f"finetune-{variant_name(v)}-f{plan.ablation_fraction:g}-s{seed}",
                                  seed, v, plan.ablation_fraction, group="ablation"))
    return cells


# ---- running cells ------------------------------------------------------------------------------------------------
def _common(plan: StudyPlan, cell: Cell, out: Path) -> Dict[str, Any]:
    return dict(data=plan.data, model="tiny", embed_dim=plan.embed_dim, depth=plan.depth, img_size=plan.img_size,
                patch_size=plan.patch_size, batch_size=plan.batch_size, epochs=1000, seed=cell.seed,
                num_workers=0, device="cpu", output=str(out), resume="auto", save_every=50, log_every=5,
                progress=False, tensorboard=False, precision="fp32")


def run_cell(plan: StudyPlan, cell: Cell, root: Path) -> Dict[str, Any]:
    from .train.config import FinetuneConfig, PretrainConfig
    from .train.finetune import train_finetune
    from .train.pretrain import train_pretrain

    out = root / "cells" / cell.name
    if cell.kind == "pretrain":
        v = cell.variant
        cfg = PretrainConfig(**_common(plan, cell, out), max_steps=plan.pretrain_steps, warmup_epochs=1.0,
                             blr=plan.pretrain_blr, decoder_embed_dim=plan.decoder_embed_dim,
                             method=v.get("method", "arm"), cluster_size=v.get("cluster_size", plan.default_cluster),
                             ordering=v.get("ordering", "row"), order_seed=cell.seed,
                             decoder_depth=v.get("decoder_depth", plan.default_decoder_depth))
        start = time.perf_counter()
        summary = train_pretrain(cfg)
        seconds = time.perf_counter() - start
        images = plan.pretrain_steps * plan.batch_size
        return {"loss": summary["loss"], "seconds": seconds, "images": images, "steps": summary["step"]}
    init = str(root / "cells" / cell.init_name / "checkpoint-last.pth") if cell.init_name else None
    cfg = FinetuneConfig(**_common(plan, cell, out), max_steps=plan.finetune_steps, warmup_epochs=1.0,
                         blr=plan.finetune_blr, init=init, label_fraction=cell.fraction, layer_decay=0.75,
                         drop_path=0.1, ema=False, mixup=0.0, cutmix=0.0, smoothing=0.1, auto_augment=None,
                         reprob=0.0, min_scale=0.6, hflip=0.0, eval_every=10**6)  # one evaluation, at the end
    start = time.perf_counter()
    summary = train_finetune(cfg)
    m = summary["metrics"]
    return {"top1": m["acc1"], "top5": m.get("acc5"),
            "seconds": time.perf_counter() - start}


def run_study(plan: StudyPlan, root: Path, command: str = "", log=print) -> Dict[str, Any]:
    """Run every unfinished cell, then write results.json, the plots and REPORT.md. Returns the results."""
    root.mkdir(parents=True, exist_ok=True)
    plan_path = root / "plan.json"
    plan_dict = dataclasses.asdict(plan)
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        if old != plan_dict:
            raise ConfigError(f"{root} holds a study with another plan ({plan_path}); use another --output or delete it")
    plan_path.write_text(json.dumps(plan_dict, indent=2) + "\n")
    cells = plan_cells(plan)
    results: Dict[str, Any] = {}
    t0 = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        done = root / "cells" / cell.name / "result.json"
        if done.exists():
            results[cell.name] = json.loads(done.read_text())
            log(f"[{i}/{len(cells)}] {cell.name}: done earlier")
            continue
        log(f"[{i}/{len(cells)}] {cell.name} ... (elapsed {time.perf_counter() - t0:.0f}s)")
        res = run_cell(plan, cell, root)
        res.update(kind=cell.kind, seed=cell.seed, fraction=cell.fraction, group=cell.group,
                   variant=variant_name(cell.variant) if cell.variant else "scratch")
        done.parent.mkdir(parents=True, exist_ok=True)
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=2) + "\n")
        tmp.replace(done)  # a cell counts as finished only once this file exists
        results[cell.name] = res
        log(f"    -> {_short(res)}")
    (root / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_report(plan, results, root, command)
    return results


def _short(res: Dict[str, Any]) -> str:
    if res["kind"] == "pretrain":
        return f"loss {res['loss']:.4f} in {res['seconds']:.1f}s"
    return f"top-1 {res['top1']:.2f}% in {res['seconds']:.1f}s"


# ---- the report ---------------------------------------------------------------------------------------------------
def mean_std(values: List[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _collect(results: Dict[str, Any], **match: Any) -> List[float]:
    out = []
    for r in results.values():
        if all(r.get(k) == v for k, v in match.items()):
            out.append(r["top1"])
    return out


def _verdict(a: List[float], b: List[float], name_a: str, name_b: str) -> str:
    """Plain reading: a difference counts only when it exceeds the seeds' spread."""
    if not a or not b:
        return f"{name_a} vs {name_b}: not measured"
    ma, mb = statistics.mean(a), statistics.mean(b)
    spread = max(statistics.stdev(a) if len(a) > 1 else 0.0, statistics.stdev(b) if len(b) > 1 else 0.0)
    diff = ma - mb
    if len(a) < 2 or len(b) < 2:
        word = "higher" if diff > 0 else "lower"
        return f"{name_a} is {abs(diff):.2f} points {word} than {name_b} (one seed: no spread to judge it by)"
    if abs(diff) <= spread:
        return f"{name_a} and {name_b} are within the seed spread ({diff:+.2f} points, spread {spread:.2f}): no clear difference"
    word = "beats" if diff > 0 else "trails"
    return f"{name_a} {word} {name_b} by {abs(diff):.2f} points (seed spread {spread:.2f}): the difference holds at this scale"


def write_report(plan: StudyPlan, results: Dict[str, Any], root: Path, command: str) -> Path:
    default = variant_name(arm_variant(plan))
    lines = ["# ARM at small scale: what holds on a CPU", ""]
    lines += [f"Generated by `{command or 'armvision study'}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}.",
              "", f"Data: {plan.data or 'embedded scikit-learn digits (1,497 train / 300 val, 10 classes)'}, "
              f"{plan.img_size} px, patch {plan.patch_size}. Backbone: width {plan.embed_dim}, depth {plan.depth} "
              f"(the same for every method). Pretraining {plan.pretrain_steps} steps, finetuning {plan.finetune_steps} "
              f"steps, batch {plan.batch_size}. Seeds: {plan.seeds} (ablations {plan.ablation_seeds}). Numbers are "
              "validation top-1 (%) after finetuning, mean ± std over seeds.", "",
              f"{len(results)} cells, {sum(r['seconds'] for r in results.values()) / 60:.1f} minutes of training "
              f"wall-clock in all (torch threads: {torch.get_num_threads()}).", ""]
    lines += ["## Supervised vs ARM vs MAE", "", "| labels | from scratch | ARM | MAE |", "|---|---|---|---|"]
    for frac in plan.label_fractions:
        row = [mean_std(_collect(results, kind="finetune", group="main", fraction=frac, variant=v))
               for v in ("scratch", default, "mae")]
        lines.append(f"| {frac:.0%} | " + " | ".join(row) + " |")
    lines += ["", f"## ARM ablations ({plan.ablation_fraction:.0%} of the labels, seeds {plan.ablation_seeds})", "",
              "| knob | value | top-1 |", "|---|---|---|"]
    for knob, values, key in (("cluster size (patches)", plan.cluster_sizes, "cluster"),
                              ("ordering", plan.orderings, "ordering"),
                              ("decoder depth", plan.decoder_depths, "decoder_depth")):
        for val in values:
            v = variant_name(arm_variant(plan, **{key: val}))
            accs = [r["top1"] for r in results.values() if r["kind"] == "finetune" and r["variant"] == v
                    and r["fraction"] == plan.ablation_fraction and r["seed"] in plan.ablation_seeds]
            label = f"{val}x{val}" if key == "cluster" else str(val)
            lines.append(f"| {knob} | {label}{' (default)' if v == default else ''} | {mean_std(accs)} |")
    lines += ["", "## Pretraining cost, same backbone and batch", "",
              "Wall-clock of whole pretraining runs (data loading, checkpoints and all), median over seeds with the "
              "range in brackets: a run that shared the CPU with other work shows up as the slow end of the range.", "",
              "| method | runs | s / step | s / epoch | ms / image |", "|---|---|---|---|---|"]
    n_train = _train_size(plan)
    for v, label in ((default, "ARM"), ("mae", "MAE")):
        runs = [r for r in results.values() if r["kind"] == "pretrain" and r["variant"] == v]
        if runs:
            steps = sorted(r["seconds"] / max(1, r["steps"]) for r in runs)
            per_epoch = [t * math.ceil(n_train / plan.batch_size) for t in steps]
            per_img = [1000 * t / plan.batch_size for t in steps]
            cell = lambda xs, f: f"{statistics.median(xs):{f}} [{xs[0]:{f}}-{xs[-1]:{f}}]"
            lines.append(f"| {label} | {len(runs)} | {cell(steps, '.3f')} | {cell(per_epoch, '.1f')} | {cell(per_img, '.2f')} |")
    lines += ["", "## Reading", ""]
    for frac in plan.label_fractions:
        scratch = _collect(results, kind="finetune", group="main", fraction=frac, variant="scratch")
        arm = _collect(results, kind="finetune", group="main", fraction=frac, variant=default)
        mae = _collect(results, kind="finetune", group="main", fraction=frac, variant="mae")
        lines.append(f"- {frac:.0%} labels: {_verdict(arm, scratch, 'ARM', 'supervised from scratch')}; "
                     f"{_verdict(arm, mae, 'ARM', 'MAE')}.")
    for knob, values, key in (("cluster size", plan.cluster_sizes, "cluster"), ("ordering", plan.orderings, "ordering"),
                              ("decoder depth", plan.decoder_depths, "decoder_depth")):
        accs = {val: [r["top1"] for r in results.values() if r["kind"] == "finetune" and r["fraction"] == plan.ablation_fraction
                      and r["variant"] == variant_name(arm_variant(plan, **{key: val})) and r["seed"] in plan.ablation_seeds]
                for val in values}
        ranked = sorted((v for v in values if accs[v]), key=lambda v: -statistics.mean(accs[v]))
        if len(ranked) >= 2:
            lines.append(f"- Ablation, {knob}: best {ranked[0]}; "
                         f"{_verdict(accs[ranked[0]], accs[ranked[1]], str(ranked[0]), str(ranked[1]))}.")
    costs = {v: [r["seconds"] / r["images"] for r in results.values() if r["kind"] == "pretrain" and r["variant"] == v]
             for v in (default, "mae")}
    if costs[default] and costs["mae"]:
        ratio = statistics.median(costs[default]) / statistics.median(costs["mae"])
        lines.append(f"- Cost: an ARM pretraining step costs {ratio:.2f}x an MAE step per image here (MAE's encoder sees "
                     f"{1 - 0.75:.0%} of the patches; ARM's sees all but the last cluster). The paper's efficiency claim "
                     "is about epochs to a given accuracy, which this table does not measure.")
    lines += ["- The paper's claims are about ImageNet at 192-224 px with 300-1600 epochs; at this scale (8x8 patch "
              "grids, minutes of pretraining) a claim that does not hold here is not refuted there, and one that holds "
              "here is only weak support. The tables above are what was measured, nothing else.", ""]
    plots = draw_plots(plan, results, root)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    lines += ["## Reproduce", "", "```", command or "armvision study", "```", "",
              "Finished cells are kept under `cells/` (each with `result.json`, `log.jsonl`, checkpoints); rerunning "
              "the command skips them and resumes an interrupted one.", ""]
    path = root / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def _train_size(plan: StudyPlan) -> int:
    if plan.data is None:
        from .data import build_dataset

        return len(build_dataset(None, "train", None, plan.img_size, False))
    return sum(1 for p in (Path(plan.data) / "train").rglob("*") if p.is_file())


def draw_plots(plan: StudyPlan, results: Dict[str, Any], root: Path) -> List[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    default = variant_name(arm_variant(plan))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.25
    for j, (v, label) in enumerate((("scratch", "from scratch"), (default, "ARM"), ("mae", "MAE"))):
        means, stds = [], []
        for frac in plan.label_fractions:
            accs = _collect(results, kind="finetune", group="main", fraction=frac, variant=v)
            means.append(statistics.mean(accs) if accs else 0.0)
            stds.append(statistics.stdev(accs) if len(accs) > 1 else 0.0)
        xs = [i + (j - 1) * width for i in range(len(plan.label_fractions))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=label)
    ax.set_xticks(range(len(plan.label_fractions)), [f"{f:.0%} labels" for f in plan.label_fractions])
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("Finetuned accuracy, mean ± std over seeds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    main_png = root / "main.png"
    fig.savefig(main_png, dpi=120)
    plt.close(fig)
    out = [main_png]
    curves = sorted((root / "cells").glob(f"pretrain-*-s{plan.seeds[0]}"))
    try:
        from .eval.plots import plot_runs

        made = plot_runs([str(c) for c in curves], str(root / "curves"))
        out += [Path(p) for p in made if Path(p).name.startswith("loss")]
        for p in out[1:]:
            target = root / f"pretrain_{p.name}"
            target.write_bytes(p.read_bytes())
        out = [out[0]] + [root / f"pretrain_{p.name}" for p in out[1:]]
    except Exception as e:  # a plot is a convenience: never lose the report over it
        print(f"warning: could not draw the pretraining curves: {e}", file=sys.stderr)
    return out


# ---- command line -------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="ImageFolder root with train/ and val/ (default: embedded digits)")
    parser.add_argument("--output", default="study", help="study folder: cells/, results.json, REPORT.md, plots")
    parser.add_argument("--quick", action="store_true", help="a smoke test of every kind of cell (< 5 minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds of the main comparison")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="optimizer steps of each pretraining cell "
                        "(default: the plan's)")
    parser.add_argument("--finetune-steps", type=int, default=None, help="optimizer steps of each finetuning cell "
                        "(default: the plan's)")
    parser.add_argument("--report-only", action="store_true", help="rewrite REPORT.md from the finished cells")


def run(args: argparse.Namespace) -> int:
    overrides: Dict[str, Any] = {"data": args.data}
    if args.seeds:
        overrides.update(seeds=args.seeds, ablation_seeds=args.seeds[:2])
    if args.pretrain_steps:
        overrides["pretrain_steps"] = args.pretrain_steps
    if args.finetune_steps:
        overrides["finetune_steps"] = args.finetune_steps
    plan = StudyPlan.quick(**overrides) if args.quick else StudyPlan(**overrides)
    root = Path(args.output)
    given = [a for a in sys.argv[2:] if a != "--report-only"] if sys.argv[1:2] == ["study"] else []
    command = " ".join(["armvision study", *map(shlex.quote, given)])
    if args.report_only:
        results = {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("cells/*/result.json"))}
        print(f"wrote {write_report(plan, results, root, command)}")
        return 0
    run_study(plan, root, command)
    print(f"study done: {root / 'REPORT.md'}")
    return 0
