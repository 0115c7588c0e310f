"""Where an ARM classifier's time goes, op by op, with next to no overhead: every op that reaches the dispatcher
(aten and armvision custom ops, the forward's and the autograd backward's) timed by a TorchDispatchMode around one
step after `--warmup` untimed ones, matmuls keyed by their operands' shapes. torch.profiler records far more per op
and, on a small guest, inflated the in-context time of some ops several-fold; this timer's total stays within a few %
of an untimed step (both printed). Wall time, one thread.

    python benchmarks/op_times.py --size base --batch-size 8 --mode forward train
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from armvision.bench.machine import isa_line  # noqa: E402
from armvision.models import create_classifier  # noqa: E402

MATMULS = ("mm", "bmm", "addmm")


class OpTimer(TorchDispatchMode):
    """Wall time per op (seconds) into `self.times`; the ops an op calls inside are part of its time."""

    def __init__(self):
        super().__init__()
        self.times: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        dt = time.perf_counter() - t0
        name = str(func.overloadpacket).replace("aten.", "").replace("armvision.", "armvision::")
        if name in MATMULS:
            shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)][-2:]
            name += " " + " x ".join(str(s) for s in shapes)
        self.times[name] = self.times.get(name, 0.0) + dt
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="base")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--mode", nargs="+", default=["forward"], choices=["forward", "train"])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rows", type=int, default=20, help="ops to list")
    opts = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_classifier(opts.size, num_classes=1000, img_size=opts.img_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(opts.batch_size, 3, opts.img_size, opts.img_size)
    y = torch.randint(0, 1000, (opts.batch_size,))

    def step(mode: str) -> None:
        if mode == "forward":
            model.eval()
            with torch.no_grad():
                model(x)
            return
        model.train()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    print(f"# {isa_line()}")
    for mode in opts.mode:
        for _ in range(opts.warmup):
            step(mode)
        t0 = time.perf_counter()
        step(mode)
        plain = time.perf_counter() - t0
        timer = OpTimer()
        t0 = time.perf_counter()
        with timer:
            step(mode)
        timed = time.perf_counter() - t0
        total = sum(timer.times.values())
        groups = {"matmuls": sum(v for k, v in timer.times.items() if k.split()[0] in MATMULS),
                  "armvision ops": sum(v for k, v in timer.times.items() if k.startswith("armvision::"))}
        groups["rest"] = total - sum(groups.values())
        print(f"\n## {opts.size}, {opts.img_size} px, batch {opts.batch_size}, fp32, {mode}: untimed step "
              f"{plain:.2f} s, timed {timed:.2f} s, in ops {total:.2f} s")
        print(" | ".join(f"{k} {v:.3f} s ({100 * v / total:.0f} %)" for k, v in groups.items()))
        for name, t in sorted(timer.times.items(), key=lambda kv: -kv[1])[:opts.rows]:
            print(f"  {1e3 * t:9.1f} ms  {name}")


if __name__ == "__main__":
    main()
