"""`finetune --init` builds the model the checkpoint describes (issue 23, item 3): no architecture flags needed,
flags given override it (and one line says so), and the command line offers what its messages suggest
(--no-strict)."""
import argparse
import dataclasses
import logging

import pytest
import torch

from armtest import FIXTURES, tiny_pretrainer
from armvision.cli import main
from armvision.cli._config import add_config_arguments, resolve_config
from armvision.train.checkpoint import load_file
from armvision.train.config import FinetuneConfig

RUN = ["--num-workers", "0", "--no-progress", "--no-tensorboard", "--max-steps", "1", "--batch-size", "16",
       "--mixup", "0", "--cutmix", "0"]


def _parse(argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p, FinetuneConfig)
    return resolve_config(FinetuneConfig, p.parse_args(argv))


@pytest.fixture
def pretrained(tmp_path):
    torch.manual_seed(0)
    pre = tiny_pretrainer(embed_dim=24, depth=3, decoder_embed_dim=16, img_size=16, patch_size=8, cluster_size=1)
    path = tmp_path / "pt" / "checkpoint-last.pth"
    path.parent.mkdir()
    torch.save({"model": pre.state_dict(), "model_config": dataclasses.asdict(pre.config), "kind": "pretrain"}, path)
    return path


def test_the_checkpoint_decides_the_architecture_and_flags_override_it(pretrained, caplog):
    with caplog.at_level(logging.INFO, logger="armvision"):
        cfg = _parse(["--init", str(pretrained)])
    m = cfg.model
    assert (m.size, m.embed_dim, m.depth, m.img_size, m.patch_size) == ("tiny", 24, 3, (16, 16), 8)
    assert m.num_classes is None and m.drop_path_rate == 0.1  # finetuning's own fields keep their defaults
    assert "the classifier --init" in caplog.text and "embed_dim 24" in caplog.text and "override" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="armvision"):
        cfg = _parse(["--init", str(pretrained), "--img-size", "32"])
    assert cfg.model.img_size == (32, 32) and cfg.model.embed_dim == 24
    assert "given values override it: img_size 32 (checkpoint: 16)" in caplog.text
    # without --init the defaults are the reference recipe's
    assert _parse([]).model.embed_dim == 768


def test_a_reference_checkpoint_is_read_off_its_tensors():
    cfg = _parse(["--init", str(FIXTURES / "reference_pretrain_checkpoint.pth")])
    ref = torch.load(FIXTURES / "reference_pretrain_checkpoint.pth", weights_only=False)
    assert cfg.model.embed_dim == ref["model"]["patch_embed.proj.weight"].shape[0]
    assert cfg.model.depth == 1 + max(int(k.split(".")[1]) for k in ref["model"] if k.startswith("layers."))


def test_finetune_runs_with_init_and_no_architecture_flags(pretrained, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--init", str(pretrained), "--output", str(out), *RUN]) == 0
    ck = load_file(out / "checkpoint-last.pth")
    assert ck["model_config"]["embed_dim"] == 24 and ck["model_config"]["depth"] == 3
    assert ck["label_names"] == [str(i) for i in range(10)]
    # a flag that makes the checkpoint not fit: one line, naming the flag the command line has
    bad = tmp_path / "bad"
    assert main(["finetune", "--init", str(pretrained), "--patch-size", "4", "--output", str(bad), *RUN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-strict" in err[0] and "strict=False" not in err[0], err
    assert main(["finetune", "--init", str(pretrained), "--patch-size", "4", "--no-strict",
                 "--output", str(tmp_path / "loose"), *RUN]) == 0
    assert "not loaded (--no-strict)" in capsys.readouterr().out
