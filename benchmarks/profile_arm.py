"""Where the time of an ARM classifier goes: torch.profiler over one forward (eval, no grad) or one train step
(forward, backward, AdamW), fp32 or bf16 autocast, one thread, after one warm-up; prints the ops by self CPU time
and the shares of the matmuls, the scan, the conv and the rest. The tables of docs/performance.md come from

    python benchmarks/profile_arm.py --size base --batch 8 --precision fp32 bf16 --mode forward train
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from armvision.bench.machine import isa_line  # noqa: E402
from armvision.models import create_classifier  # noqa: E402

GROUPS = {"matmuls": ("aten::addmm", "aten::mm", "aten::bmm"), "scan": ("armvision::selective_scan",),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="base")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--mode", nargs="+", default=["forward"], choices=["forward", "train"])
    ap.add_argument("--rows", type=int, default=12, help="ops to list")
    opts = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_classifier(opts.size, num_classes=1000, img_size=opts.img_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(opts.batch_size, 3, opts.img_size, opts.img_size)
    y = torch.randint(0, 1000, (opts.batch_size,))
    print(f"# {isa_line()}")
    for precision in opts.precision:
        for mode in opts.mode:
            step(model, opt, x, y, mode, precision)  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step(model, opt, x, y, mode, precision)
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events) / 1e6
            print(f"\n## {opts.size}, {opts.img_size} px, batch {opts.batch_size}, {precision}, {mode}: "
                  f"{total:.2f} s of self CPU time")
            shares = {g: sum(e.self_cpu_time_total for e in events if e.key.startswith(names)) / 1e6
                      for g, names in GROUPS.items()}
            shares["rest"] = total - sum(shares.values())
            print(" | ".join(f"{g} {s:.3f} s ({100 * s / total:.0f} %)" for g, s in shares.items()))
            for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:opts.rows]:
                print(f"  {e.key:<48} {e.self_cpu_time_total / 1e3:9.1f} ms  {e.count:5d} calls")


if __name__ == "__main__":
    main()
