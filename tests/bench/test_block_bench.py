"""Smoke test of `armvision bench block` (tiny width, seconds): every row printed, ratios against the block
without the scan, and the u * silu(z) stand-in really replaces the scan (and is undone afterwards)."""
import torch

from armvision import cli
from armvision.bench import block
from armvision.nn import mamba


def test_quick_run_prints_every_backend_and_ratio(capsys):
    assert cli.main(["bench", "block", "--quick", "--backends", "cpu", "torch", "none"]) == 0
    out = capsys.readouterr().out
    for case in ("pretrain: 1 direction, L=128", "finetune: 4 directions, L=197"):
        for label in ("| cpu |", "| torch |", "| u * silu(z) (no recurrence) | "):
            assert any(case in line and label in line for line in out.splitlines()), (case, label, out)
    assert "| 1.00 |" in out


def test_no_scan_stand_in_is_restored():
    original = mamba.selective_scan_fn
    with block.scan_backend("none"):
        u, z = torch.randn(1, 2, 3), torch.randn(1, 2, 3)
        torch.testing.assert_close(mamba.selective_scan_fn(u, None, None, None, None, z=z), u * torch.nn.functional.silu(z))
    assert mamba.selective_scan_fn is original
