"""The benchmark scripts for a shared machine: benchmarks/kernel_ab.py (the A/B of two builds of the CPU kernel: an
A/A run, both sides this checkout's sources, on the tiny shape must find identical outputs and gradients and print
both timing lines); ARM vs ViT is `armvision bench vs-vit` (tests/bench/test_vs_vit.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from armvision.ops import cpu_kernel

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(cpu_kernel.load() is None, reason="no C compiler: the kernel cannot be built")
def test_a_against_itself_is_identical():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernel_ab.py"), "--old-dir",
                        str(ROOT / "src" / "armvision" / "ops" / "csrc"), "--shape", "tiny", "--repeats", "2"],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stderr[-3000:]
    diffs = [ln for ln in p.stdout.splitlines() if "max |new - old|" in ln]
    assert len(diffs) == 9 and all(ln.endswith("= 0.0e+00") for ln in diffs), p.stdout
    assert "tiny fwd: old" in p.stdout and "tiny fwd+bwd: old" in p.stdout and "new / old" in p.stdout


def test_a_bad_revision_is_one_clear_error():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernel_ab.py"), "--old-rev", "no-such-rev"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "--old-rev no-such-rev: git ls-tree" in p.stderr and "Traceback" not in p.stderr
