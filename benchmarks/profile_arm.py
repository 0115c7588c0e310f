"""Where the time of an ARM classifier goes: one forward (eval, no grad) or one train step (forward, backward,
AdamW), fp32 or bf16 autocast, one thread, after warm-ups; prints the ops by time and the shares of the matmuls, the
scan, the conv, the gate and the rest. Two timers:

- `--timer profiler` (default): torch.profiler, self CPU time by op, after one warm-up (the 2 Dec tables of
  docs/performance.md);
- `--timer ops`: every op that reaches the dispatcher (aten and armvision custom ops, the forward's and the autograd
  backward's) timed by a TorchDispatchMode, wall time, after three warm-ups, matmuls keyed by their operands' shapes.
  torch.profiler records far more per op and, on a small guest, inflated the in-context time of some ops
  several-fold; this timer's total stays within a few % of an untimed step (both printed; the 3 Dec split).

    python benchmarks/profile_arm.py --size base --batch 8 --precision fp32 bf16 --mode forward train
    python benchmarks/profile_arm.py --timer ops --size base --batch 8 --mode forward train
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from armvision.bench.machine import isa_line  # noqa: E402
from armvision.models import create_classifier  # noqa: E402

MATMULS = ("mm", "bmm", "addmm")
GROUPS = {"matmuls": tuple(f"aten::{m}" for m in MATMULS), "scan": ("armvision::selective_scan",),
          "conv": ("armvision::causal_conv1d",), "gate": ("armvision::silu_mul",)}


def step(model, opt, x, y, mode: str, precision: str) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        if mode == "forward":
            model.eval()
            with torch.no_grad():
                model(x)
            return
        model.train()
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


class OpTimer(TorchDispatchMode):
    """Wall time per op (seconds) into `self.times`, keyed like the profiler's names ("aten::mm (a, b) x (b, c)");
    the ops an op calls inside are part of its time."""

    def __init__(self):
        super().__init__()
        self.times: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        dt = time.perf_counter() - t0
        ns, _, name = str(func.overloadpacket).rpartition(".")
        name = f"{ns or 'aten'}::{name}"
        if name.split("::")[1] in MATMULS:
            shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)][-2:]
            name += " " + " x ".join(str(s) for s in shapes)
        self.times[name] = self.times.get(name, 0.0) + dt
        return out


def profile_step(run):
    """torch.profiler over run(): (heading, {op: seconds}, calls) by self CPU time."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.key_averages()
    times = {e.key: e.self_cpu_time_total / 1e6 for e in events}
    return f"{sum(times.values()):.2f} s of self CPU time", times, {e.key: e.count for e in events}


def time_ops(run):
    """OpTimer over run(), after an untimed run(): (heading, {op: seconds}, {})."""
    t0 = time.perf_counter()
    run()
    plain = time.perf_counter() - t0
    timer = OpTimer()
    t0 = time.perf_counter()
    with timer:
        run()
    timed = time.perf_counter() - t0
    return (f"untimed step {plain:.2f} s, timed {timed:.2f} s, {sum(timer.times.values()):.2f} s in ops (wall)",
            timer.times, {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="base")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--mode", nargs="+", default=["forward"], choices=["forward", "train"])
    ap.add_argument("--timer", default="profiler", choices=["profiler", "ops"])
    ap.add_argument("--rows", type=int, default=12, help="ops to list")
    opts = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_classifier(opts.size, num_classes=1000, img_size=opts.img_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(opts.batch_size, 3, opts.img_size, opts.img_size)
    y = torch.randint(0, 1000, (opts.batch_size,))
    measure, warmups = (profile_step, 1) if opts.timer == "profiler" else (time_ops, 3)
    print(f"# {isa_line()}")
    for precision in opts.precision:
        for mode in opts.mode:
            def run():
                step(model, opt, x, y, mode, precision)
            for _ in range(warmups):
                run()
            heading, times, calls = measure(run)
            total = sum(times.values())
            print(f"\n## {opts.size}, {opts.img_size} px, batch {opts.batch_size}, {precision}, {mode}: {heading}")
            shares = {g: sum(t for k, t in times.items() if k.startswith(names)) for g, names in GROUPS.items()}
            shares["rest"] = total - sum(shares.values())
            print(" | ".join(f"{g} {s:.3f} s ({100 * s / total:.0f} %)" for g, s in shares.items()))
            for key, t in sorted(times.items(), key=lambda kv: -kv[1])[:opts.rows]:
                print(f"  {key:<48} {1e3 * t:9.1f} ms" + (f"  {calls[key]:5d} calls" if key in calls else ""))


if __name__ == "__main__":
    main()
