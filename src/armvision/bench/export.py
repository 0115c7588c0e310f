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

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from ..errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..argcheck import NONNEG_INT, POS_INT

    parser.add_argument("--size", default="base", choices=["tiny", "small", "base"],
                        help="ARM and ViT size (default base)")
    parser.add_argument("--img-size", type=POS_INT, default=224, help="image size (default 224)")
    parser.add_argument("--batch", type=POS_INT, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--threads", type=POS_INT, default=2,
                        help="intra-op threads, torch and onnxruntime (default 2)")
    parser.add_argument("--repeats", type=POS_INT, default=5, help="timed rounds per batch (default 5)")
    parser.add_argument("--warmup", type=NONNEG_INT, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--no-vit", action="store_true", help="skip the timm ViT baseline")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--train", action="store_true", help="also time a forward+backward step, eager vs compiled")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny models, 64 px, 1 repeat")
    parser.add_argument("--work-dir", default=None, help="where to write the .onnx files (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")


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


def run(args: argparse.Namespace) -> int:
    import armvision

    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"bench export needs {e.name}: pip install 'armvision[export]'") from None
    if args.quick:
        args.size, args.img_size, args.repeats, args.batch = "tiny", 64, 1, [1, 2]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="armvision-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    img = args.img_size
    setup: Dict[str, float] = {}

    arm = armvision.create_classifier(args.size, num_classes=1000, img_size=img).eval()
    eager: Dict[str, Callable] = {}
    runners: Dict[str, Callable] = {}
    runners["ARM eager (CPU kernel)"] = eager["ARM"] = lambda x: arm(x)
    t = time.perf_counter()
    armvision.export(arm, work / "arm.onnx", check=False)
    setup["ARM onnx export s"] = time.perf_counter() - t
    runners["ARM onnxruntime"] = _ort_runner(work / "arm.onnx", args.threads)
    if not args.no_compile:
        compiled = torch.compile(arm, fullgraph=True)
        t = time.perf_counter()
        with torch.no_grad():
            compiled(torch.randn(args.batch[0], 3, img, img))
        setup["ARM torch.compile first call s"] = time.perf_counter() - t
        runners["ARM torch.compile(fullgraph)"] = lambda x: compiled(x)
    if not args.no_vit:
        vit, vit_name = _vit(args.size, img)
        runners[f"ViT eager ({vit_name})"] = eager["ViT"] = lambda x: vit(x)
        t = time.perf_counter()
        _onnx_export_plain(vit, torch.randn(2, 3, img, img), work / "vit.onnx")
        setup["ViT onnx export s"] = time.perf_counter() - t
        runners["ViT onnxruntime"] = _ort_runner(work / "vit.onnx", args.threads)

    rows: List[dict] = []
    for batch in args.batch:
        x = torch.randn(batch, 3, img, img)
        with torch.no_grad():
            ref = {k: f(x) for k, f in eager.items()}
            diff = {name: float((f(x) - ref["ViT" if name.startswith("ViT") else "ARM"]).abs().max())
                    for name, f in runners.items()}
            times: Dict[str, List[float]] = {name: [] for name in runners}
            for r in range(args.warmup + args.repeats):
                for name, f in runners.items():
                    t = time.perf_counter()
                    f(x)
                    if r >= args.warmup:
                        times[name].append(time.perf_counter() - t)
        base = batch / statistics.median(times["ARM eager (CPU kernel)"])
        for name in runners:
            ips = batch / statistics.median(times[name])
            rows.append(dict(runtime=name, batch=batch, img_per_s=ips, vs_arm_eager=ips / base,
                             min_max=(batch / max(times[name]), batch / min(times[name])), max_diff=diff[name]))
    if args.train and not args.no_compile:
        rows += _train_step(arm, args, img)

    print(f"bench export: ARM-{args.size[0].upper()} / ViT-{args.size[0].upper()} at {img} px, "
          f"{args.threads} threads, torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, "
          f"median of {args.repeats} interleaved rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"{'runtime':<40} {'batch':>5} {'img/s':>8} {'(min-max)':>15} {'vs ARM eager':>12} {'max|diff|':>10}")
    for r in rows:
        lo, hi = r["min_max"]
        print(f"{r['runtime']:<40} {r['batch']:>5} {r['img_per_s']:>8.2f} {f'({lo:.2f}-{hi:.2f})':>15} "
              f"{r['vs_arm_eager']:>11.2f}x {r['max_diff']:>10.2g}")
    print("setup: " + ", ".join(f"{k} {v:.0f}" for k, v in setup.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(size=args.size, img_size=img, threads=args.threads, rows=rows,
                                                   setup=setup), indent=1))
    return 0


def _train_step(arm, args, img) -> List[dict]:
    """Forward + backward of the classifier (train mode), eager vs torch.compile(fullgraph=True)."""
    arm.train()
    compiled = torch.compile(arm, fullgraph=True)
    rows = []
    for batch in args.batch:
        x = torch.randn(batch, 3, img, img)
        steps = {"ARM train step eager": lambda: arm(x).sum().backward(),
                 "ARM train step torch.compile(fullgraph)": lambda: compiled(x).sum().backward()}
        steps["ARM train step torch.compile(fullgraph)"]()  # compile outside the timing
        times: Dict[str, List[float]] = {k: [] for k in steps}
        for r in range(args.warmup + args.repeats):
            for name, f in steps.items():
                arm.zero_grad(set_to_none=True)
                t = time.perf_counter()
                f()
                if r >= args.warmup:
                    times[name].append(time.perf_counter() - t)
        base = batch / statistics.median(times["ARM train step eager"])
        for name in steps:
            ips = batch / statistics.median(times[name])
            rows.append(dict(runtime=name, batch=batch, img_per_s=ips, vs_arm_eager=ips / base,
                             min_max=(batch / max(times[name]), batch / min(times[name])), max_diff=float("nan")))
    arm.eval()
    return rows
