"""`armvision bench model`: images/s and peak memory of ARM models against timm ViTs of the same size, one run.

For each model (ARM classifier, ARM pretrainer, timm ViT) x size x image size, two modes are timed:
`forward` (eval mode, no grad) and `train` (forward + backward + AdamW step). Each mode does `--warmup` untimed
iterations, then `--repeats` timed ones (one batch each, CUDA synchronised); the table gives the median images/s
and the min-max over repeats. The environment (torch version, threads, device, CPU model, load average) is
recorded with the results.

Peak memory (machine.py): CUDA's allocator peak beyond what was allocated before the model was built (weights +
gradients + optimizer state + activations + the input batch); on CPU the growth of the resident-set high-water mark,
exact because each measurement runs in a fresh Python process (`isolate`, the default on CPU).

FLOPs per image (flops.py): `FlopCounterMode` on a batch of one (train: forward + backward) with the selective scan
run through its sequential reference, plus an analytic count of the scan's elementwise work (`scan_gflop`). MFU =
achieved FLOP/s / the machine's matmul peak, measured in the same run with a big square matmul in the benchmark's
dtype.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .common import sync
from .flops import flop_counter, reference_scan, scan_flops
from .machine import PeakMemory, environment, matmul_peak_flops

FAMILIES = ("arm", "arm-pretrain", "vit")
BENCH_SIZES = ("tiny", "small", "base")  # the sizes with a timm ViT of the same width to compare with
DEFAULT_IMG = {"arm": 224, "arm-pretrain": 192, "vit": 224}
QUICK_IMG = {"arm": 64, "arm-pretrain": 128, "vit": 64}
MODES = ("forward", "train")


@dataclass
class Case:
    """One measurement: a model at one image size and batch, in one mode."""

    family: str
    size: str
    img_size: int
    batch_size: int
    mode: str
    warmup: int = 2
    repeats: int = 5
    device: str = "cpu"
    dtype: str = "float32"
    threads: Optional[int] = None
    peak_n: Optional[int] = None  # side of the square matmul measuring the peak (None: 2048 CPU, 8192 CUDA)

    @property
    def name(self) -> str:
        return {"arm": "ARM", "arm-pretrain": "ARM-pretrain", "vit": "ViT"}[self.family] + f"-{self.size}"


@dataclass
class Result:
    case: Case
    seconds: list[float] = field(default_factory=list)  # per timed iteration
    peak_mem_mb: Optional[float] = None
    matmul_peak_flops: Optional[float] = None  # measured right before this case's timing
    params_m: Optional[float] = None
    counted_gflop: Optional[float] = None  # per image, FlopCounterMode
    scan_gflop: Optional[float] = None  # per image, analytic selective-scan work
    error: Optional[str] = None

    @property
    def images_per_s(self) -> list[float]:
        return [self.case.batch_size / s for s in self.seconds]

    def summary(self) -> dict:
        d = asdict(self)
        ips = self.images_per_s
        if ips:
            q = statistics.quantiles(ips, n=4) if len(ips) > 1 else [ips[0]] * 3
            d.update(median_img_s=statistics.median(ips), min_img_s=min(ips), max_img_s=max(ips),
                     p25_img_s=q[0], p75_img_s=q[2], median_ms=1000 * statistics.median(self.seconds))
        return d


# ------------------------------------------------------------------------------------------------ models
def build_model(case: Case) -> tuple[nn.Module, str]:
    """The model of a case and its task ('cls' -> logits, 'pretrain' -> output with .loss)."""
    if case.family == "vit":
        import timm

        return timm.create_model(f"vit_{case.size}_patch16_224", pretrained=False, img_size=case.img_size,
                                 num_classes=1000), "cls"
    from ..models import create_classifier, create_pretrainer

    if case.family == "arm":
        return create_classifier(case.size, num_classes=1000, img_size=case.img_size), "cls"
    if case.family == "arm-pretrain":
        return create_pretrainer(case.size, img_size=case.img_size), "pretrain"
    raise ConfigError(f"unknown model family {case.family!r}; choose from {', '.join(FAMILIES)}")


def check_img_size(family: str, img_size: int, patch: int = 16, cluster: int = 4) -> Optional[str]:
    """Why a family cannot run at img_size (None when it can)."""
    if img_size % patch:
        return f"{img_size} px is not a multiple of the {patch} px patch"
    if family == "arm-pretrain":
        side = patch * cluster
        if img_size % side or img_size // side < 2:
            return f"pretrainer needs a multiple of {side} px (clusters of {cluster}x{cluster} patches), >= {2 * side}"
    return None


def _loss(model: nn.Module, task: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out.loss if task == "pretrain" else F.cross_entropy(out, y)


# ----------------------------------------------------------------------------------------------- measure
def _step_fn(case: Case, train: bool):
    """(setup() -> (model, task, optimizer), step(model, task, opt, x, y)) for one case's mode and dtype."""
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[case.dtype]
    dev = case.device

    def setup() -> tuple[nn.Module, str, Optional[torch.optim.Optimizer]]:
        model, task = build_model(case)
        model.to(dev).train(train)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05) if train else None
        return model, task, opt

    def step(model, task, opt, inp: torch.Tensor, lab: torch.Tensor) -> None:
        with torch.autocast(device_type=dev.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            if not train:
                with torch.no_grad():
                    model(inp)
                return
            loss = _loss(model, task, inp, lab)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return setup, step


def _count_flops(res: Result, model: nn.Module, task: str, x1: torch.Tensor, y1: torch.Tensor, train: bool) -> None:
    """Counted and analytic scan GFLOP per image (a batch of one), into `res`."""
    model.zero_grad(set_to_none=True)
    with reference_scan(model), flop_counter() as counter:
        if train:
            _loss(model, task, x1, y1).backward()
        else:
            with torch.no_grad():
                model(x1)
    res.counted_gflop = counter.get_total_flops() / 1e9
    with torch.no_grad():
        fwd_scan = scan_flops(model, lambda: model(x1))
    res.scan_gflop = fwd_scan * (3 if train else 1) / 1e9  # backward of the recurrence ~ 2x its forward


def measure(case: Case) -> Result:
    """Time one case in this process (memory is exact only in a fresh process on CPU)."""
    res = Result(case)
    if case.threads:
        torch.set_num_threads(case.threads)
    dev, train = case.device, case.mode == "train"
    torch.manual_seed(0)
    x = torch.randn(case.batch_size, 3, case.img_size, case.img_size, device=dev)
    y = torch.randint(0, 1000, (case.batch_size,), device=dev)
    setup, step = _step_fn(case, train)
    # priming: one batch-1 step of a throw-away copy, so that kernel libraries paged in on first use are resident
    # before the memory baseline (on CPU they would otherwise count as the model's memory)
    model, task, opt = setup()
    step(model, task, opt, x[:1], y[:1])
    del model, opt
    # the peak in the same conditions as the timing below
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[case.dtype]
    res.matmul_peak_flops = matmul_peak_flops(dev, dtype, n=case.peak_n, repeats=3)
    mem = PeakMemory(dev)
    mem.start()
    model, task, opt = setup()
    res.params_m = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    for _ in range(case.warmup):
        step(model, task, opt, x, y)
    sync(dev)
    for _ in range(case.repeats):
        t0 = time.perf_counter()
        step(model, task, opt, x, y)
        sync(dev)
        res.seconds.append(time.perf_counter() - t0)
    res.peak_mem_mb = mem.peak_mb()
    _count_flops(res, model, task, x[:1], y[:1], train)  # after timing: no effect on memory or timing
    return res


def measure_isolated(case: Case) -> Result:
    """Run `measure` in a fresh Python process (exact CPU peak memory, one model's crash stays contained)."""
    code = "import sys, armvision.bench.model as m; sys.exit(m._worker(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(asdict(case))], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return Result(case, error=lines[-1] if lines else f"worker exited with {proc.returncode}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data.pop("case")
    return Result(case, **data)


def _worker(case_json: str) -> int:
    res = measure(Case(**json.loads(case_json)))
    d = asdict(res)
    print(json.dumps(d))
    return 0


# ----------------------------------------------------------------------------------------------- report
def _fmt(v: Optional[float], spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict], peak_flops: float) -> str:
    """Markdown table of the results: one line per (model, px, mode)."""
    head = ("| model | px | batch | mode | params (M) | img/s median | min-max | ms/iter | peak mem (MB) "
            "| GFLOP/img (counted + scan) | MFU | vs ViT |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        c = r["case"]
        name = {"arm": "ARM", "arm-pretrain": "ARM-pretrain", "vit": "ViT"}[c["family"]] + f"-{c['size']}"
        if r.get("error"):
            out.append(f"| {name} | {c['img_size']} | {c['batch_size']} | {c['mode']} | error: {r['error']} "
                       + "|" * 8)
            continue
        flop = (r["counted_gflop"] or 0) + (r["scan_gflop"] or 0)
        mfu = flop * 1e9 * r["median_img_s"] / peak_flops
        out.append(
            f"| {name} | {c['img_size']} | {c['batch_size']} | {c['mode']} | {_fmt(r['params_m'], '.1f')} "
            f"| {r['median_img_s']:.2f} | {r['min_img_s']:.2f}-{r['max_img_s']:.2f} | {r['median_ms']:.0f} "
            f"| {_fmt(r['peak_mem_mb'], '.0f')} | {r['counted_gflop']:.2f} + {r['scan_gflop']:.3f} "
            f"| {100 * mfu:.1f}% | {r.get('vs_vit', '')} |")
    return "\n".join(out)


def _add_vit_ratio(rows: list[dict]) -> None:
    """ARM rows get their images/s as a multiple of the ViT of the same size, px, batch and mode."""
    key = lambda c: (c["size"], c["img_size"], c["batch_size"], c["mode"])  # noqa: E731
    vit = {key(r["case"]): r for r in rows if r["case"]["family"] == "vit" and not r.get("error")}
    for r in rows:
        v = vit.get(key(r["case"]))
        if r["case"]["family"] != "vit" and v and not r.get("error"):
            r["vs_vit"] = f"{r['median_img_s'] / v['median_img_s']:.2f}x"


def make_cases(models: Sequence[str] = FAMILIES, sizes: Sequence[str] = BENCH_SIZES,
               img_sizes: Optional[Sequence[int]] = None, batch_size: int = 8, modes: Sequence[str] = MODES,
               warmup: int = 2, repeats: int = 5, device: str = "auto", dtype: str = "float32",
               threads: Optional[int] = None, quick: bool = False) -> tuple[list[Case], list[str]]:
    """The cases to run and notes on the combinations skipped. img_sizes default: DEFAULT_IMG per family; quick:
    tiny sizes, QUICK_IMG, batch 2, 1 warm-up, 2 repeats, a 1024 matmul for the peak."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available here; use --device cpu")
    if quick:
        sizes, batch_size, warmup, repeats = ["tiny"], 2, 1, 2
    for flag, v in (("--batch-size", batch_size), ("--repeats", repeats)):
        if v < 1:
            raise ConfigError(f"{flag} must be >= 1, got {v}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup}")
    cases, notes = [], []
    for fam in models:
        for size in sizes:
            for img in img_sizes or [(QUICK_IMG if quick else DEFAULT_IMG)[fam]]:
                why = check_img_size(fam, img)
                if why:
                    notes.append(f"skipped {fam}-{size} at {img} px: {why}")
                    continue
                cases += [Case(fam, size, img, batch_size, mode, warmup, repeats, device, dtype, threads,
                               peak_n=1024 if quick else None) for mode in modes]
    if not cases:
        raise ConfigError("no case left to run: " + "; ".join(notes))
    return cases, notes


def run_model_bench(cases: Sequence[Case], notes: Sequence[str] = (), isolate: Optional[bool] = None,
                    json_path: Optional[str] = None, argv: Optional[list] = None) -> list[dict]:
    """Measure every case (in a fresh process each with `isolate`, default: on CPU), print the table and the
    notes, write everything to `json_path` (with `argv`, the command line) and return the result rows."""
    device, dtype_name, peak_n = cases[0].device, cases[0].dtype, cases[0].peak_n
    isolate = isolate if isolate is not None else device == "cpu"
    env = environment(device)
    env["isolated_processes"] = isolate
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    peak = matmul_peak_flops(device, dtype, n=peak_n)
    print(f"# {env['device']} ({env.get('gpu', env['cpu'])}), torch {env['torch']}, {env['torch_threads']} threads, "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s ({dtype_name}) at start", flush=True)
    rows = []
    for case in cases:
        print(f"# {case.name} {case.img_size}px {case.mode} ...", flush=True)
        try:
            res = measure_isolated(case) if isolate else measure(case)
        except (RuntimeError, ValueError) as e:  # one model failing should not lose the others' numbers
            res = Result(case, error=str(e).splitlines()[0])
        rows.append(res.summary())
    _add_vit_ratio(rows)
    # the machine's peak = the best of all measurements (start, end, one per case): on a shared machine any single
    # measurement can be depressed by other processes, which would inflate MFU
    peak = max([peak, matmul_peak_flops(device, dtype, n=peak_n)] + [r["matmul_peak_flops"] or 0 for r in rows])
    print(f"# matmul peak over the run (best of {len(rows) + 2} measurements): {peak / 1e9:.1f} GFLOP/s; MFU uses it")
    if hasattr(os, "getloadavg"):
        env["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(table(rows, peak))
    for n in notes:
        print(f"# {n}")
    if json_path:
        out = {"argv": argv if argv is not None else sys.argv, "environment": env, "matmul_peak_flops": peak,
               "results": rows, "notes": list(notes)}
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=2))
    return rows
