"""Issue 25 (7): the PyTorch fallback of the fused CPU kernel, tested on every machine. tests/ops/test_cpu_kernel.py
skips its whole module when no C compiler works, its fallback tests included; here the compiler is hidden (or
broken) in a child process, so the fallback runs with or without a compiler on the test machine: the scan still
gives the reference's values, and the notice is one short line."""
import os
import subprocess
import sys

import pytest

FALLBACK = """
import torch
from armvision.ops import cpu_kernel, selective_scan_fn, selective_scan_ref
assert cpu_kernel.load() is None
g = torch.Generator().manual_seed(0)
u, delta = torch.randn(2, 8, 17, generator=g), torch.rand(2, 8, 17, generator=g) * 0.5
A, B, C = -0.5 - torch.rand(8, 4, generator=g), torch.randn(2, 4, 17, generator=g), torch.randn(2, 4, 17, generator=g)
D, z = torch.randn(8, generator=g), torch.randn(2, 8, 17, generator=g)
out = selective_scan_fn(u, delta, A, B, C, D, z, delta_softplus=True)
want = selective_scan_ref(u.double(), delta.double(), A.double(), B.double(), C.double(), D.double(), z.double(),
                          delta_softplus=True)
err = float((out.double() - want).abs().max() / want.abs().max())
print("OK" if err < 2e-6 else f"error {err:.2e}")
"""
BROKEN_CC = "#!/bin/sh\necho 'cc1: fatal error: the compiler of this test is broken on purpose' >&2\nexit 1\n"
MAX_NOTICE = 200  # characters: one readable line, not the whole compiler command


@pytest.mark.parametrize("compiler", ["none", "broken"])
def test_the_scan_falls_back_with_one_short_notice(tmp_path, compiler):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if compiler == "broken":
        (bin_dir / "cc").write_text(BROKEN_CC)
        (bin_dir / "cc").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "ARMVISION_SCAN_BACKEND", "ARMVISION_CPU_KERNEL")}
    env.update(PATH=str(bin_dir), ARMVISION_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", FALLBACK], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "OK"
    notices = [line for line in res.stderr.splitlines() if "fused CPU scan kernel unavailable" in line]
    assert len(notices) == 1, res.stderr
    assert len(notices[0]) <= MAX_NOTICE, f"{len(notices[0])} characters: {notices[0]}"
    assert ("no C compiler found" if compiler == "none" else "broken on purpose") in notices[0]
