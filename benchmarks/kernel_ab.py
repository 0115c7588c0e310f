"""A/B of two versions of the fused CPU kernel's C sources in one process: both libraries are built, then the
selective scan (forward, and forward + backward) alternates between them at one shape, one thread, this process's
CPU time, so that a loaded machine slows both sides alike. Prints the medians, new/old ratios, and how far the new
build's outputs and gradients are from the old one's.

    python benchmarks/kernel_ab.py --old-rev HEAD~1 --shape finetune-B --repeats 9
    python benchmarks/kernel_ab.py --old-dir /path/to/old/csrc

"new" is this checkout's src/armvision/ops/csrc; "old" is a git revision's copy of it, or a folder.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from armvision.ops import cpu_kernel, selective_scan_fn  # noqa: E402

SHAPES = {"pretrain-B": (8, 768, 128, 16), "finetune-B": (32, 768, 197, 16), "tiny": (2, 32, 33, 4)}
CSRC = "src/armvision/ops/csrc"


def old_sources(rev: str, into: Path) -> Path:
    """The kernel's C files at git revision `rev`, written into `into` (exits with git's message if it has none)."""
    def git(*cmd: str) -> bytes:
        p = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True)
        if p.returncode != 0:
            sys.exit(f"--old-rev {rev}: git {' '.join(cmd)}: {p.stderr.decode().strip() or p.returncode}")
        return p.stdout

    for name in git("ls-tree", "--name-only", f"{rev}:{CSRC}").decode().split():
        (into / name).write_bytes(git("show", f"{rev}:{CSRC}/{name}"))
    return into


def build(src: Path):
    """The kernel library built from the C files in `src` (cached like the package's own build)."""
    saved = cpu_kernel.CSRC
    cpu_kernel.CSRC = src
    try:
        cpu_kernel.reset()
        lib = cpu_kernel.load()
    finally:
        cpu_kernel.CSRC = saved
    if lib is None:
        sys.exit(f"the kernel in {src} did not build: {cpu_kernel.unavailable_reason()}")
    return lib


def inputs(batch: int, D: int, L: int, N: int):
    """The mixer's layout: (batch, D, L) views of channels-last tensors; B, C (batch, N, L); softplus dt."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, L, D, generator=g).transpose(1, 2)
    delta = (0.5 * torch.randn(batch, L, D, generator=g)).transpose(1, 2)
    A = -torch.exp(0.5 * torch.randn(D, N, generator=g))
    B, C = torch.randn(batch, N, L, generator=g), torch.randn(batch, N, L, generator=g)
    z = torch.randn(batch, L, D, generator=g).transpose(1, 2)
    Dv, bias = torch.randn(D, generator=g), 0.1 * torch.randn(D, generator=g)
    return [t.requires_grad_() for t in (u, delta, A, B, C, Dv, z, bias)], torch.randn(batch, D, L, generator=g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--old-rev", help="git revision whose csrc/ is the old side")
    src.add_argument("--old-dir", type=Path, help="folder with the old side's C files")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="finetune-B")
    ap.add_argument("--repeats", type=int, default=9)
    opts = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        old_dir = opts.old_dir or old_sources(opts.old_rev, Path(tmp))
        libs = {"old": build(old_dir), "new": build(ROOT / CSRC)}
    args, gout = inputs(*SHAPES[opts.shape])

    def fwd():
        with torch.no_grad():
            return selective_scan_fn(*args[:7], delta_bias=args[7], delta_softplus=True, backend="cpu")

    def fwd_bwd():
        for a in args:
            a.grad = None
        selective_scan_fn(*args[:7], delta_bias=args[7], delta_softplus=True, backend="cpu").backward(gout)

    got = {}
    for side, lib in libs.items():
        cpu_kernel._state["lib"] = lib
        out = fwd()
        fwd_bwd()
        got[side] = [out] + [a.grad.clone() for a in args]
    for name, new, old in zip(["out", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"], got["new"],
                              got["old"]):
        print(f"{name}: max |new - old| / max |old| = {float((new - old).abs().max() / old.abs().max()):.1e}")
    times = {side: {"fwd": [], "fwd+bwd": []} for side in libs}
    for rep in range(opts.repeats):
        for side in ("old", "new") if rep % 2 == 0 else ("new", "old"):
            cpu_kernel._state["lib"] = libs[side]
            for what, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
                t = time.process_time()
                fn()
                times[side][what].append(time.process_time() - t)
    for what in ("fwd", "fwd+bwd"):
        old, new = (statistics.median(times[s][what]) * 1000 for s in ("old", "new"))
        print(f"{opts.shape} {what}: old {old:.1f} ms, new {new:.1f} ms, new / old {new / old:.3f}")


if __name__ == "__main__":
    main()
