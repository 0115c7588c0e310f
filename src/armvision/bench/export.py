"""`armvision bench export`: CPU inference of the exported ARM classifier (onnxruntime) and of the whole-model
torch.compile(fullgraph=True), against eager PyTorch (fused CPU scan kernel) and a timm ViT exported the same way.

One run, one process, same threads for everyone (`--threads`, torch and onnxruntime intra-op): the ARM classifier and
a timm ViT of the same size are exported to ONNX (dynamic batch; ARM's scan as ONNX `Scan`, see
ops/scan_decomposed.py), the ARM classifier is compiled with torch.compile(fullgraph=True) (inductor), and then for
each batch size all runtimes are timed in interleaved rounds (so that load from other processes hits them alike):
`--repeats` rounds after `--warmup`, median images/s reported with the ratio to ARM eager. Every runtime's output
is compared with eager's first (max |diff| in the table). --train adds one forward+backward step of the classifier,
eager vs compiled.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..errors import ConfigError


def _vit(size: str, img: int):
    import timm

    name = {"tiny": "vit_tiny_patch16_224", "small": "vit_small_patch16_224", "base": "vit_base_patch16_224"}[size]
    return timm.create_model(name, pretrained=False, num_classes=1000, img_size=img).eval(), name


def _onnx_export_plain(model, x, path: Path) -> None:
    """A plain torch model (the ViT) exported exactly as armvision.export does it: torch.export with a dynamic
    batch, then torch.onnx."""
    from torch.export import Dim

    with torch.no_grad():
        program = torch.export.export(model, (x,), dynamic_shapes=({0: Dim("batch", min=1, max=4096)},))
        torch.onnx.export(program, (x,), dynamo=True, input_names=["images"], output_names=["logits"],
                          verbose=False).save(str(path))


def _ort_runner(path: Path, threads: int) -> Callable:
    from ..deploy import onnx_session

    sess = onnx_session(path, threads=threads)
    name = sess.get_inputs()[0].name
    return lambda x: torch.from_numpy(sess.run(None, {name: x.numpy()})[0])


Runner = Callable[[torch.Tensor], torch.Tensor]


def _runners(size: str, img: int, threads: int, batch0: int, work: Path, vit: bool, compile: bool):
    """The classifier in eval mode, {runtime: fn(x) -> logits}, {"ARM"/"ViT": eager fn}, {setup step: seconds}."""
    from ..deploy import export
    from ..models import create_classifier

    setup: Dict[str, float] = {}
    arm = create_classifier(size, num_classes=1000, img_size=img).eval()
    eager: Dict[str, Runner] = {}
    runners: Dict[str, Runner] = {}
    runners["ARM eager (CPU kernel)"] = eager["ARM"] = lambda x: arm(x)
    t = time.perf_counter()
    export(arm, work / "arm.onnx", check=False)
    setup["ARM onnx export s"] = time.perf_counter() - t
    runners["ARM onnxruntime"] = _ort_runner(work / "arm.onnx", threads)
    if compile:
        compiled = torch.compile(arm, fullgraph=True)
        t = time.perf_counter()
        with torch.no_grad():
            compiled(torch.randn(batch0, 3, img, img))
        setup["ARM torch.compile first call s"] = time.perf_counter() - t
        runners["ARM torch.compile(fullgraph)"] = lambda x: compiled(x)
    if vit:
        vit_model, vit_name = _vit(size, img)
        runners[f"ViT eager ({vit_name})"] = eager["ViT"] = lambda x: vit_model(x)
        t = time.perf_counter()
        _onnx_export_plain(vit_model, torch.randn(2, 3, img, img), work / "vit.onnx")
        setup["ViT onnx export s"] = time.perf_counter() - t
        runners["ViT onnxruntime"] = _ort_runner(work / "vit.onnx", threads)
    return arm, runners, eager, setup


def _rows(names: Sequence[str], times: Dict[str, List[float]], batch: int, base_name: str,
          diff: Dict[str, float]) -> List[dict]:
    """One table row per runtime: median images/s, its ratio to `base_name`, min-max, max |diff|."""
    base = batch / statistics.median(times[base_name])
    rows = []
    for name in names:
        ips = batch / statistics.median(times[name])
        rows.append(dict(runtime=name, batch=batch, img_per_s=ips, vs_arm_eager=ips / base,
                         min_max=(batch / max(times[name]), batch / min(times[name])),
                         max_diff=diff.get(name, float("nan"))))
    return rows


def _interleaved(steps: Dict[str, Callable[[], object]], warmup: int, repeats: int,
                 before: Optional[Callable[[], None]] = None) -> Dict[str, List[float]]:
    """Seconds per call of each step, in `warmup + repeats` rounds that call every step once (warm-up untimed)."""
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for r in range(warmup + repeats):
        for name, f in steps.items():
            if before:
                before()
            t = time.perf_counter()
            f()
            if r >= warmup:
                times[name].append(time.perf_counter() - t)
    return times


def _print_table(rows: List[dict], setup: Dict[str, float], size: str, img: int, threads: int, repeats: int) -> None:
    print(f"bench export: ARM-{size[0].upper()} / ViT-{size[0].upper()} at {img} px, "
          f"{threads} threads, torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, "
          f"median of {repeats} interleaved rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"{'runtime':<40} {'batch':>5} {'img/s':>8} {'(min-max)':>15} {'vs ARM eager':>12} {'max|diff|':>10}")
    for r in rows:
        lo, hi = r["min_max"]
        print(f"{r['runtime']:<40} {r['batch']:>5} {r['img_per_s']:>8.2f} {f'({lo:.2f}-{hi:.2f})':>15} "
              f"{r['vs_arm_eager']:>11.2f}x {r['max_diff']:>10.2g}")
    print("setup: " + ", ".join(f"{k} {v:.0f}" for k, v in setup.items()))


def run_export_bench(size: str = "base", img_size: int = 224, batch: Sequence[int] = (1, 8), threads: int = 2,
                     repeats: int = 5, warmup: int = 1, vit: bool = True, compile: bool = True, train: bool = False,
                     work_dir: Optional[str] = None, json_path: Optional[str] = None, quick: bool = False) -> List[dict]:
    """Print (and return) the inference table (and, with `train`, the train-step rows); see the module docstring.
    quick: tiny models, 64 px, batches 1 and 2, 1 repeat."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"bench export needs {e.name}: pip install 'armvision[export]'") from None
    if quick:
        size, img_size, repeats, batch = "tiny", 64, 1, [1, 2]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="armvision-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    arm, runners, eager, setup = _runners(size, img_size, threads, batch[0], work, vit, compile)
    rows: List[dict] = []
    for b in batch:
        x = torch.randn(b, 3, img_size, img_size)
        with torch.no_grad():
            ref = {k: f(x) for k, f in eager.items()}
            diff = {name: float((f(x) - ref["ViT" if name.startswith("ViT") else "ARM"]).abs().max())
                    for name, f in runners.items()}
            times = _interleaved({name: (lambda f=f: f(x)) for name, f in runners.items()}, warmup, repeats)
        rows += _rows(list(runners), times, b, "ARM eager (CPU kernel)", diff)
    if train and compile:
        rows += _train_step(arm, batch, img_size, warmup, repeats)
    _print_table(rows, setup, size, img_size, threads, repeats)
    if json_path:
        Path(json_path).write_text(json.dumps(dict(size=size, img_size=img_size, threads=threads, rows=rows,
                                                   setup=setup), indent=1))
    return rows


def _train_step(arm, batches: Sequence[int], img: int, warmup: int, repeats: int) -> List[dict]:
    """Forward + backward of the classifier (train mode), eager vs torch.compile(fullgraph=True)."""
    arm.train()
    compiled = torch.compile(arm, fullgraph=True)
    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, img, img)
        steps = {"ARM train step eager": lambda: arm(x).sum().backward(),
                 "ARM train step torch.compile(fullgraph)": lambda: compiled(x).sum().backward()}
        steps["ARM train step torch.compile(fullgraph)"]()  # compile outside the timing
        times = _interleaved(steps, warmup, repeats, before=lambda: arm.zero_grad(set_to_none=True))
        rows += _rows(list(steps), times, batch, "ARM train step eager", {})
    arm.eval()
    return rows
