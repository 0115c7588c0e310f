"""Tiny runs in-process: pretraining lowers the loss, finetuning from it beats chance, run outputs, bad data,
a non-finite loss."""
import json
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from armvision.errors import ConfigError, DataError
from armvision.train.checkpoint import load_file
from armvision.train.config import FinetuneConfig, PretrainConfig, config_from_dict
from armvision.train.distributed import DistInfo
from armvision.train.engine import Trainer, TrainingDiverged, resolve_precision
from armvision.train.finetune import train_finetune
from armvision.train.optim import param_groups
from armvision.train.pretrain import train_pretrain

from ..data.conftest import make_bad_folder
from .conftest import Toy, fit

QUIET = dict(num_workers=0, progress=False, log_every=5)


def _log(out, kind="train"):
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.mark.slow
def test_tiny_pretrain_lowers_the_loss_then_finetune_beats_chance(tmp_path):
    pt = config_from_dict(PretrainConfig, dict(
        model="tiny", embed_dim=32, depth=2, decoder_embed_dim=32, decoder_depth=2, img_size=32, patch_size=8,
        cluster_size=2, batch_size=32, epochs=1, max_steps=40, warmup_epochs=0.1, blr=2e-2,
        output=str(tmp_path / "pt"), **QUIET))
    s = train_pretrain(pt)
    log = _log(tmp_path / "pt")
    assert [r["step"] for r in log] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert log[-1]["loss"] < 0.85 * log[0]["loss"], [r["loss"] for r in log]
    assert s["step"] == 40 and all(r["img_per_s"] > 0 and r["lr"] >= 0 for r in log)
    assert list((tmp_path / "pt" / "tb").glob("events.out.tfevents.*"))
    ck = load_file(tmp_path / "pt" / "checkpoint-last.pth")  # weights_only=True
    assert ck["kind"] == "pretrain" and ck["config"]["model"]["cluster_size"] == 2 and ck["model_config"]["kind"] == "pretrainer"
    assert (tmp_path / "pt" / "config.yaml").read_text().count("cluster_size: 2") == 1

    ft = config_from_dict(FinetuneConfig, dict(
        model="tiny", embed_dim=32, depth=2, img_size=32, patch_size=8, init=pt.output + "/checkpoint-last.pth",
        batch_size=32, epochs=2, max_steps=92, warmup_epochs=0.1, blr=4e-2, mixup=0, cutmix=0, auto_augment=None,
        reprob=0, min_scale=0.6, hflip=0.0, layer_decay=0.75, ema_decay=0.99, drop_path=0.0, tensorboard=False,
        output=str(tmp_path / "ft"), **QUIET))
    s = train_finetune(ft)
    val = _log(tmp_path / "ft", "val")
    assert [r["epoch"] for r in val] == [1, 2]
    assert s["metrics"]["acc1"] > 40.0, s["metrics"]  # chance is 10%
    assert s["metrics"]["acc5"] >= s["metrics"]["acc1"] and "ema_acc1" in s["metrics"]
    best = load_file(tmp_path / "ft" / "checkpoint-best.pth")
    assert best["best"] == max(r["acc1"] for r in val)
    assert best["label_names"] == [str(i) for i in range(10)]  # the class names travel with the weights


@pytest.mark.slow
def test_bad_data_folder_trains_and_reports_skipped_files(tmp_path, caplog):
    data = make_bad_folder(tmp_path / "data")
    cfg = config_from_dict(PretrainConfig, dict(
        model="tiny", embed_dim=16, depth=2, decoder_embed_dim=16, decoder_depth=2, img_size=16, patch_size=8,
        cluster_size=1, batch_size=4, epochs=2, warmup_epochs=0.5, data=str(data), tensorboard=False,
        output=str(tmp_path / "out"), **QUIET))
    with caplog.at_level(logging.INFO, logger="armvision"):
        s = train_pretrain(cfg)
    assert s["step"] == 8  # 16 usable images / batch 4, 2 epochs
    assert "3 file(s) skipped when scanning" in caplog.text and "1 failed to decode" in caplog.text
    assert "empty.jpg" in caplog.text and "notes.txt" in caplog.text and "corrupt.jpg" in caplog.text
    # issue 13 (4): the corrupt file is named once, not once per epoch (or per worker)
    assert sum("corrupt.jpg" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
    with pytest.raises(DataError, match="strict-data"):
        train_pretrain(PretrainConfig(**{**cfg.__dict__, "strict_data": True, "output": str(tmp_path / "strict")}))


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.zeros(64, dtype=torch.long))
    calls = {"n": 0}

    def loss_fn(model, x, y):
        calls["n"] += 1
        loss = model(x).pow(2).mean()
        return loss * float("nan") if calls["n"] == 6 else loss

    cfg = PretrainConfig(batch_size=8, epochs=1, warmup_epochs=0, blr=0.1, save_every=4, tensorboard=False,
                         output=str(tmp_path), **QUIET)
    trainer = Trainer(cfg, DistInfo(), Toy(), data, loss_fn, make_groups=lambda m: param_groups(m, 0.0))
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 6 .*checkpoint-last.pth"):
        fit(trainer)
    ck = load_file(tmp_path / "checkpoint-last.pth")
    assert ck["step"] == 4 and torch.isfinite(ck["model"]["lin.weight"]).all()


def test_precision_is_chosen_by_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == (None, False)
    assert resolve_precision("bf16", cpu) == (torch.bfloat16, False)
    assert resolve_precision("fp16", cpu) == (torch.float16, True)
    with pytest.raises(ConfigError):
        resolve_precision("fp8", cpu)


def test_evaluate_counts_top1_top5_exactly():
    from armvision.train.finetune import make_evaluate

    labels = torch.arange(7)
    data = TensorDataset(torch.arange(7).float()[:, None], labels)

    class Fixed(nn.Module):  # predicts x for x < 4, else (x + 1) % 7: top-1 right for 4 of 7, top-5 for 6 of 7
        def forward(self, x):
            pred = torch.where(x[:, 0] < 4, x[:, 0], (x[:, 0] + 1) % 7)
            return -(torch.arange(7.0)[None] - pred[:, None]).abs() * 3.0  # (B, 7)

    cfg = FinetuneConfig(batch_size=3, num_workers=0)
    metrics = make_evaluate(cfg, data, DistInfo())(Fixed(), Fixed())
    logits = Fixed()(torch.arange(7).float()[:, None])
    assert metrics["acc1"] == pytest.approx(100 * 4 / 7) and metrics["acc5"] == pytest.approx(100 * 6 / 7)
    assert metrics["val_loss"] == pytest.approx(nn.functional.cross_entropy(logits, labels).item())
    assert metrics["ema_acc1"] == metrics["acc1"]


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64))

    def loss_fn(model, x, y):
        return (model(x)[:, 0] - y).pow(2).mean()

    finals = []
    for bs, accum in ((16, 1), (8, 2), (4, 4)):
        torch.manual_seed(1)
        cfg = PretrainConfig(batch_size=bs, accum_iter=accum, epochs=2, warmup_epochs=0.5, blr=0.5, clip_grad=1.0,
                             tensorboard=False, output=str(tmp_path / f"a{accum}"), **{**QUIET, "log_every": 1})
        s = fit(Trainer(cfg, DistInfo(), Toy(), data, loss_fn, make_groups=lambda m: param_groups(m, 0.05)))
        assert s["step"] == 8  # 64 / 16 per step, 2 epochs
        finals.append((load_file(tmp_path / f"a{accum}" / "checkpoint-last.pth")["model"],
                       [r["loss"] for r in _log(tmp_path / f"a{accum}")]))
    for w, losses in finals[1:]:
        assert losses == pytest.approx(finals[0][1], rel=1e-5)
        for k in w:
            torch.testing.assert_close(w[k], finals[0][0][k], rtol=1e-5, atol=1e-6)


def test_init_from_the_reference_pretraining_checkpoint(fixtures_dir, caplog):
    from armtest import load_fixture

    from armvision.train.finetune import build_classifier, init_from

    cfg = config_from_dict(FinetuneConfig, dict(model="tiny", embed_dim=32, depth=12, img_size=64, patch_size=16))
    model = build_classifier(cfg, num_classes=5)
    with caplog.at_level(logging.INFO, logger="armvision"):
        init_from(model, str(fixtures_dir / "reference_pretrain_checkpoint.pth"))
    out = caplog.text
    assert "pretrainer weights" in out and "head.weight" in out and "pos_embed" in out
    sd = load_fixture("reference_pretrain_checkpoint.pth")["model"]  # the oracle: the raw reference tensors
    own = model.state_dict()
    for suffix in ("", "_b", "_c", "_c_b"):  # the 1-direction mixer is copied into the 4 directions
        assert torch.equal(own[f"layers.3.mixer.A{suffix}_log"], sd["layers.3.mixer.A_log"]), suffix
        assert torch.equal(own[f"layers.3.mixer.conv1d{suffix}.weight"], sd["layers.3.mixer.conv1d.weight"])
    assert torch.equal(own["layers.0.mlp.w1.weight"], sd["layers.0.mlp.w1.weight"])
