"""`armvision demo` (make run) end to end with a few steps, and the train-step benchmark's pieces."""
import argparse

import pytest
import torch

from armvision.bench import train_step
from armvision.data import AugmentSeeded, SafeImageFolder, pretrain_transform
from armvision.cli import demo


@pytest.mark.slow
def test_demo_smoke_writes_checkpoints_logs_and_curves(tmp_path, capsys):
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    args = p.parse_args(["--output", str(tmp_path), "--pretrain-epochs", "1", "--finetune-epochs", "1",
                         "--max-steps", "3", "--num-workers", "1"])
    n = torch.get_num_threads()
    try:
        assert demo.run(args) == 0
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    for rel in ("pretrain/checkpoint-last.pth", "finetune/checkpoint-best.pth", "pretrain/log.jsonl",
                "finetune/config.yaml", "plots/loss.png"):
        assert (tmp_path / rel).is_file(), rel
        assert str(tmp_path / rel) in out or rel.endswith("config.yaml")
    assert list((tmp_path / "pretrain" / "tb").glob("events.*"))
    assert "val top-1" in out and "chance 10%" in out
    # the demo pretrains the cluster setup it announces: 4x4 patches of 8 px in 2x2 clusters
    ck = torch.load(tmp_path / "pretrain" / "checkpoint-last.pth", weights_only=True)
    assert ck["config"]["model"]["cluster_size"] == 2 and ck["config"]["model"]["img_size"] == (32, 32)


def test_bench_step_and_data_pieces(tmp_path):
    r = train_step.bench_step("tiny", 16, 4, torch.device("cpu"), "fp32", warmup=1, repeats=2,
                              overrides=dict(embed_dim=16, depth=2, decoder_embed_dim=16, decoder_depth=2,
                                             patch_size=8, cluster_size=1))
    assert r["img_per_s"] > 0 and r["min"] <= r["img_per_s"] <= r["max"] and r["precision"] == "float32"
    folder = train_step.make_jpeg_folder(tmp_path, 8, size=(40, 30))
    ds = AugmentSeeded(SafeImageFolder(folder / "train", transform=pretrain_transform(16)))
    d = train_step.bench_data(ds, 2, 0, epochs=1, label="jpeg")
    assert len(ds) == 8 and d["img_per_s"] > 0 and d["workers"] == 0
