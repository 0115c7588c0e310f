"""Smoke test of `armvision bench block` (tiny width, seconds): every row printed, ratios against the block
without the scan; each row's block runs on its backend, and the no-scan stand-in replaces only the recurrence."""
import torch

from armvision import cli
from armvision.bench import block


def test_quick_run_prints_every_backend_and_ratio(capsys):
    assert cli.main(["bench", "block", "--quick", "--backends", "cpu", "torch", "none"]) == 0
    out = capsys.readouterr().out
    for case in ("pretrain: 1 direction, L=128", "finetune: 4 directions, L=197"):
        for label in ("| cpu |", "| torch |", "| u * silu(z) (no recurrence) | "):
            assert any(case in line and label in line for line in out.splitlines()), (case, label, out)
    assert "| 1.00 |" in out


def test_each_row_runs_its_backend_and_the_stand_in_replaces_the_recurrence():
    assert block.make_block(8, 4, "torch").mixer.scan_backend == "torch"
    assert block.make_block(8, 4, "cpu").mixer.scan_backend == "cpu"
    none = block.make_block(8, 4, "none").mixer
    assert isinstance(none, block.NoScanMixer)
    u, z, dt_in, w_dt = torch.randn(4, 1, 3, 8), torch.randn(1, 3, 8), torch.randn(4, 1, 3, 2), torch.randn(4, 8, 2)
    delta = torch.einsum("gblr,gdr->gbld", dt_in, w_dt)  # the dt projection, kept in the stand-in's cost
    torch.testing.assert_close(none.scan(u, dt_in, None, None, None, None, z, None, None, "torch", w_dt),
                               (u + delta).sum(0) * torch.nn.functional.silu(z))
    real = block.make_block(8, 4, "torch").mixer
    real.load_state_dict(none.state_dict())  # same weights: only the recurrence differs
    x = torch.randn(1, 10, 8)
    assert not torch.allclose(none(x, hw=(3, 3), cls_index=4), real(x, hw=(3, 3), cls_index=4))
