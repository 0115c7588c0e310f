"""`armvision pretrain --method contrastive`: the command trains on two views per image and writes a checkpoint that
finetuning loads (projection head dropped, directions copied); bad configs are one clear error."""
import json
import logging
import math

import pytest

from armvision.data import TwoViews
from armvision.errors import ConfigError
from armvision.models import create_classifier, load_checkpoint
from armvision.train.checkpoint import load_file
from armvision.train.config import FinetuneConfig, PretrainConfig, config_from_dict
from armvision.train.finetune import train_finetune
from armvision.train.pretrain import pretrain_data_transform, train_pretrain

from .conftest import QUIET, run_cli

SMALL = dict(model="tiny", embed_dim=32, depth=2, img_size=32, patch_size=8)
QUIET_KW = dict(num_workers=0, progress=False, tensorboard=False, log_every=1)


def _losses(out):
    lines = (out / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def test_cli_pretrain_writes_a_checkpoint_that_finetunes(tmp_path, caplog):
    out = tmp_path / "pt"
    run_cli(["pretrain", "--method", "contrastive", "--model", "tiny", "--img-size", "32", "--patch-size", "8",
             "--max-steps", "3", "--embed-dim", "32", "--depth", "2", "--batch-size", "16", "--temperature", "0.5",
             "--output", str(out), *QUIET])
    ck = load_file(out / "checkpoint-last.pth")
    assert ck["kind"] == "pretrain" and ck["config"]["method"] == "contrastive"
    assert ck["model_config"]["kind"] == "contrastive" and ck["model_config"]["temperature"] == 0.5
    assert "method: contrastive" in (out / "config.yaml").read_text()
    losses = _losses(out)
    assert len(losses) == 3 and all(abs(v - math.log(2 * 16 - 1)) < 1.5 for v in losses), losses

    report = load_checkpoint(create_classifier("tiny", num_classes=10, embed_dim=32, depth=2, img_size=32,
                                               patch_size=8), out / "checkpoint-last.pth")
    assert report.source == "contrastive"
    assert "dropped the projection head (projector.*" in str(report) and "into 4 directions" in str(report)

    ft = config_from_dict(FinetuneConfig, dict(**SMALL, init=str(out / "checkpoint-last.pth"), batch_size=16,
                                               epochs=1, max_steps=2, mixup=0, cutmix=0, auto_augment=None, reprob=0,
                                               output=str(tmp_path / "ft"), **QUIET_KW))
    with caplog.at_level(logging.INFO, logger="armvision"):
        s = train_finetune(ft)
    assert s["step"] == 2 and "acc1" in s["metrics"]
    assert "(contrastive weights)" in caplog.text


def test_bad_config_is_one_clear_error(tmp_path):
    p = run_cli(["pretrain", "--method", "contrastive", "--temperature", "0", "--output", str(tmp_path / "x"),
                 *QUIET], check=False)
    assert p.returncode != 0 and "--temperature 0: must be > 0" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="temperature=-1"):
        config_from_dict(PretrainConfig, dict(method="contrastive", temperature=-1.0))
    with pytest.raises(ConfigError, match="temperature=0"):
        config_from_dict(PretrainConfig, {"method": "contrastive", "model": {"temperature": 0}}, "run.yaml")
    with pytest.raises(ConfigError, match="method='simclr'"):
        PretrainConfig(method="simclr")


def test_contrastive_method_trains_on_two_views():
    cfg = config_from_dict(PretrainConfig, dict(method="contrastive", **SMALL))
    tf = pretrain_data_transform(cfg)
    assert isinstance(tf, TwoViews) and cfg.model.kind == "contrastive"
    arm = config_from_dict(PretrainConfig, dict(method="arm", **SMALL, cluster_size=2))
    assert not isinstance(pretrain_data_transform(arm), TwoViews)


@pytest.mark.slow
def test_contrastive_pretraining_lowers_the_loss(tmp_path):
    cfg = config_from_dict(PretrainConfig, dict(
        method="contrastive", **SMALL, batch_size=32, epochs=2, max_steps=90, warmup_epochs=0.1, lr=3e-3,
        temperature=0.2, min_scale=0.5, output=str(tmp_path / "pt"), **QUIET_KW))
    s = train_pretrain(cfg)
    losses = _losses(tmp_path / "pt")
    assert s["step"] == 90
    chance = math.log(2 * 32 - 1)  # the loss of features that tell the images apart no better than chance
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > 0.97 * chance and last < 0.95 * chance and last < first - 0.25, losses
