"""`armvision bench model`: case selection, FLOP counting against hand-computed numbers, memory, report."""
from __future__ import annotations

import argparse
import json

import pytest
import torch
import torch.nn as nn

from armvision.bench import model as bm
from armvision.cli.bench import model as model_cli
from armvision.errors import ConfigError


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    model_cli.add_arguments(p)
    return p.parse_args(list(argv))


def _vit_tiny_forward_flops(img: int) -> int:
    """Hand count for timm vit_tiny_patch16 (D=192, depth 12, MLP 4D, cls token, 1000 classes), one image."""
    d, n = 192, (img // 16) ** 2 + 1
    # qkv, proj, mlp (2 layers), attention (2 batched matmuls)
    per_block = 2 * n * d * (3 * d) + 2 * n * d * d + 2 * (2 * n * d * 4 * d) + 2 * (2 * n * n * d)
    patch = 2 * (n - 1) * d * (3 * 16 * 16)
    return 12 * per_block + patch + 2 * d * 1000


def test_check_img_size():
    assert bm.check_img_size("arm", 224) is None and bm.check_img_size("vit", 384) is None
    assert "multiple of the 16 px patch" in bm.check_img_size("arm", 200)
    assert bm.check_img_size("arm-pretrain", 192) is None and bm.check_img_size("arm-pretrain", 128) is None
    assert "multiple of 64 px" in bm.check_img_size("arm-pretrain", 224)
    assert bm.check_img_size("arm-pretrain", 64) is not None  # one cluster: nothing to predict


def test_cases_from_args_defaults_quick_and_skips():
    cases, notes = model_cli.cases_from_args(_args("--device", "cpu"))
    assert len(cases) == 3 * 3 * 2 and not notes
    assert {(c.family, c.img_size) for c in cases} == {("arm", 224), ("arm-pretrain", 192), ("vit", 224)}
    cases, _ = model_cli.cases_from_args(_args("--device", "cpu", "--quick"))
    assert {c.size for c in cases} == {"tiny"} and {c.batch_size for c in cases} == {2}
    assert {(c.family, c.img_size) for c in cases} == {("arm", 64), ("arm-pretrain", 128), ("vit", 64)}
    cases, notes = model_cli.cases_from_args(_args("--device", "cpu", "--img-size", "224", "256", "--sizes", "small"))
    assert {(c.family, c.img_size) for c in cases} == {
        ("arm", 224), ("arm", 256), ("vit", 224), ("vit", 256), ("arm-pretrain", 256)}
    assert notes == ["skipped arm-pretrain-small at 224 px: pretrainer needs a multiple of 64 px "
                     "(clusters of 4x4 patches), >= 128"]
    with pytest.raises(ConfigError, match="no case left"):
        model_cli.cases_from_args(_args("--device", "cpu", "--models", "arm-pretrain", "--img-size", "224"))
    with pytest.raises(ConfigError, match="--batch-size"):
        model_cli.cases_from_args(_args("--device", "cpu", "--batch-size", "0"))


class _FakeMixer(nn.Module):
    """Shaped like a two-direction Mamba mixer: A_log and A_b_log of (d_inner, d_state)."""

    def __init__(self, d: int, n: int):
        super().__init__()
        self.A_log = nn.Parameter(torch.zeros(d, n))
        self.A_b_log = nn.Parameter(torch.zeros(d, n))
        self.D = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x


def test_scan_flops_counts_every_direction_and_layer():
    model = nn.Sequential(_FakeMixer(8, 4), nn.Identity(), _FakeMixer(8, 4))
    got = bm.scan_flops(model, lambda: model(torch.zeros(3, 10, 8)))
    # 2 layers x 2 directions x (B=3, L=10, d_inner=8) x (6 * d_state + 5 + 2 * d_conv)
    assert got == 2 * 2 * 3 * 10 * 8 * (6 * 4 + 5 + 8)
    assert not model[0]._forward_hooks  # hooks removed


def test_measure_vit_in_process_counts_flops_exactly():
    torch.manual_seed(0)
    fwd = bm.measure(bm.Case("vit", "tiny", 32, 2, "forward", warmup=0, repeats=2, peak_n=128))
    assert fwd.error is None and len(fwd.seconds) == 2 and all(s > 0 for s in fwd.seconds)
    assert fwd.counted_gflop * 1e9 == pytest.approx(_vit_tiny_forward_flops(32), rel=1e-9)
    assert fwd.scan_gflop == 0.0  # no Mamba mixer in a ViT
    assert fwd.params_m == pytest.approx(5.5 + 0.2, abs=0.3)
    train = bm.measure(bm.Case("vit", "tiny", 32, 2, "train", warmup=1, repeats=1, peak_n=128))
    # backward = 2x forward, except the patch conv (the image needs no gradient)
    patch = 2 * 4 * 192 * 768
    assert train.counted_gflop * 1e9 == pytest.approx(3 * _vit_tiny_forward_flops(32) - patch, rel=1e-9)
    s = train.summary()
    assert s["median_img_s"] == pytest.approx(2 / train.seconds[0])


@pytest.mark.slow
def test_measure_arm_models_scan_flops_match_hand_count():
    torch.manual_seed(0)
    # ARM-tiny: dim 192 (expand 1), d_state 16, dt_rank 12, d_conv 4, SwiGLU hidden 512
    D, N, R, H = 192, 16, 12, 512
    per_token = D * (6 * N + 5 + 2 * 4)  # analytic elementwise scan + conv work of one direction
    clf = bm.measure(bm.Case("arm", "tiny", 32, 1, "forward", warmup=0, repeats=1, peak_n=128))
    assert clf.error is None
    L = 5  # 2x2 patches + the middle cls token
    mixer = 2 * L * D * 2 * D + 2 * L * D * D + 4 * (2 * L * D * (R + 2 * N) + 2 * L * R * D + 2 * L * D * N)
    # in_proj, out_proj; per direction x_proj, dt_proj and the read-out C.h (the reference's batched matmul)
    layer = mixer + 3 * 2 * L * D * H  # + SwiGLU
    assert clf.counted_gflop * 1e9 == pytest.approx(12 * layer + 2 * 4 * D * 768 + 2 * D * 1000, rel=1e-9)
    # 12 layers x 4 directions x (2x2 patches + middle cls token)
    assert clf.scan_gflop * 1e9 == pytest.approx(12 * 4 * 5 * per_token, rel=1e-12)
    pre = bm.measure(bm.Case("arm-pretrain", "tiny", 128, 1, "forward", warmup=0, repeats=1, peak_n=128))
    # 12 layers x 1 direction x clusters 1..3 of 16 patches (the last cluster is only a target)
    assert pre.scan_gflop * 1e9 == pytest.approx(12 * 1 * 48 * per_token, rel=1e-12)
    assert pre.params_m > clf.params_m  # the 512-wide decoder


@pytest.mark.slow
def test_isolated_worker_reports_memory_of_weights_grads_and_adam():
    res = bm.measure_isolated(bm.Case("vit", "tiny", 32, 2, "train", warmup=1, repeats=1, peak_n=128))
    assert res.error is None, res.error
    weights_mb = res.params_m * 1e6 * 4 / 2**20
    # weights + grads + 2 AdamW moments = 4x the weights; activations of 2 images at 32 px are small
    assert 3.5 * weights_mb < res.peak_mem_mb < 4 * weights_mb + 150


def test_report_table_and_vit_ratio():
    rows = []
    for fam, sec in (("vit", 0.5), ("arm", 1.0)):
        r = bm.Result(bm.Case(fam, "tiny", 224, 4, "forward"), seconds=[sec, sec * 2, sec / 2], peak_mem_mb=100.0,
                      params_m=5.0, counted_gflop=1.0, scan_gflop=0.5)
        rows.append(r.summary())
    rows.append(bm.Result(bm.Case("arm-pretrain", "tiny", 192, 4, "forward"), error="boom").summary())
    bm._add_vit_ratio(rows)
    assert rows[1]["vs_vit"] == "0.50x" and "vs_vit" not in rows[0]
    text = bm.table(rows, peak_flops=100e9)
    lines = text.splitlines()
    assert len(lines) == 5 and lines[1].startswith("|---")
    # ARM: 4 img / 1.0 s = 4 img/s; 1.5 GFLOP/img -> 6 GFLOP/s of 100 = 6.0%
    row = "| ARM-tiny | 224 | 4 | forward | 5.0 | 4.00 | 2.00-8.00 | 1000 | 100 | 1.00 + 0.500 | 6.0% | 0.50x |"
    assert row in text
    assert "error: boom" in lines[4]


def test_run_quick_vit_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert model_cli.run(_args("--quick", "--models", "vit", "--modes", "forward", "--device", "cpu", "--no-isolate",
                        "--img-size", "32", "--json", str(out))) == 0
    data = json.loads(out.read_text())
    assert data["environment"]["torch"] == torch.__version__ and data["environment"]["device"] == "cpu"
    assert data["matmul_peak_flops"] > 0 and len(data["results"]) == 1
    assert "| ViT-tiny | 32 | 2 | forward |" in capsys.readouterr().out
