import argparse
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from armvision.errors import CheckpointError, ConfigError
from armvision.train import checkpoint as ck
from armvision.cli._config import add_config_arguments, resolve_config
from armvision.train.config import FinetuneConfig, PretrainConfig, config_from_dict
from armvision.train.distributed import GlobalBatchSampler, ShardSampler
from armvision.train.optim import classifier_layer_id, effective_lr, param_groups
from armvision.train.schedule import lr_at, set_lr


def _parse(cls, argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p, cls)
    return resolve_config(cls, p.parse_args(argv))


def test_config_precedence_defaults_yaml_flags(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("embed_dim: 48\ncluster_size: 2\nblr: 1.0e-3\nbetas: [0.8, 0.9]\n")
    cfg = _parse(PretrainConfig, ["--config", str(y), "--cluster-size", "3", "--no-tensorboard"])
    assert cfg.model.embed_dim == 48 and cfg.model.cluster_size == 3 and cfg.blr == 1e-3 and cfg.betas == [0.8, 0.9]
    assert cfg.tensorboard is False and cfg.model.img_size == (192, 192) and cfg.clip_grad == 3.0  # reference defaults
    assert _parse(FinetuneConfig, []).layer_decay == 0.65


def test_config_errors(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("embed_dimm: 48\n")
    with pytest.raises(ConfigError, match="unknown key 'embed_dimm'.*did you mean 'embed_dim'"):
        _parse(PretrainConfig, ["--config", str(y)])
    with pytest.raises(ConfigError, match="ordering='diagonal'"):
        config_from_dict(PretrainConfig, {"ordering": "diagonal"})
    with pytest.raises(ConfigError, match="depth='x' is not a valid int"):
        config_from_dict(PretrainConfig, {"depth": "x"})
    with pytest.raises(ConfigError, match="file not found"):
        _parse(PretrainConfig, ["--config", str(tmp_path / "missing.yaml")])


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, 100, 10, 1.0) == 0.0
    assert lr_at(5, 100, 10, 1.0) == pytest.approx(0.5)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert effective_lr(1.5e-4, None, 64, 4, 8) == pytest.approx(1.5e-4 * 2048 / 256)
    assert effective_lr(1.5e-4, 0.01, 64, 4, 8) == 0.01


class _Cls(nn.Module):
    def __init__(self, depth=3):
        super().__init__()
        self.depth = depth
        self.patch_embed = nn.Linear(4, 4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 4))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.layers = nn.ModuleList(nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 4)) for _ in range(depth))
        self.norm_f = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)

    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}


def test_param_groups_no_decay_and_layer_decay():
    m = _Cls(depth=3)
    groups = param_groups(m, 0.05, layer_decay=0.5)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["layers.0.1.weight"]["weight_decay"] == 0.05
    for n in ("layers.0.1.bias", "layers.0.0.weight", "pos_embed", "cls_token", "norm_f.weight"):
        assert by_name[n]["weight_decay"] == 0.0, n
    assert by_name["patch_embed.weight"]["lr_scale"] == 0.5 ** 4  # layer 0 of depth+1 = 4
    assert by_name["layers.2.1.weight"]["lr_scale"] == 0.5 ** 1
    assert by_name["head.weight"]["lr_scale"] == 1.0
    assert classifier_layer_id("layers.11.mixer.A_log", 12) == 12
    opt = torch.optim.AdamW(groups, lr=1.0)
    set_lr(opt, 2.0)
    assert {g["lr"] for g in opt.param_groups} == {2 * 0.5 ** k for k in range(5)}
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))


def test_global_batch_sampler_ranks_split_the_single_process_batches():
    one = GlobalBatchSampler(50, 8, 1, 0, seed=1)
    r0, r1 = GlobalBatchSampler(50, 4, 2, 0, seed=1), GlobalBatchSampler(50, 4, 2, 1, seed=1)
    for s in (one, r0, r1):
        s.set_epoch(2)
    assert len(one) == len(r0) == 6
    for b, b0, b1 in zip(one, r0, r1):
        assert b == b0 + b1
    first = list(one)
    one.set_epoch(2, start=4)
    assert list(one) == first[4:]
    one.set_epoch(3)
    assert list(one) != first
    assert sorted(i for s in (ShardSampler(11, 2, 0), ShardSampler(11, 2, 1)) for i in s) == list(range(11))
    padded = [list(ShardSampler(11, 2, r, pad=True)) for r in (0, 1)]
    assert padded == [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11]]  # 11 >= n: padding, same length on both ranks
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        GlobalBatchSampler(5, 4, 2, 0)


def test_checkpoint_atomic_roundtrip_with_rng_states(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # sets numpy's cached gaussian
    state = ck.rng_state()
    expect = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    path = ck.save_atomic({"model": {"w": torch.ones(2)}, "rng": state, "config": {"a": 1}}, tmp_path / "c.pth")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]  # no temp file left
    loaded = ck.load_file(path)  # weights_only=True
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    ck.set_rng_state(loaded["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    assert torch.equal(got[0], expect[0]) and np.array_equal(got[1], expect[1]) and got[2:] == expect[2:]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ck.load_file(tmp_path / "none.pth")
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="trunc.pth .* is truncated or not a checkpoint"):
        ck.load_file(tmp_path / "trunc.pth")
    assert ck.resume_path("auto", tmp_path) is None
    with pytest.raises(CheckpointError, match="--resume auto"):
        ck.resume_path(str(tmp_path / "x.pth"), tmp_path)


def test_progress_lines_and_log_truncation_on_resume(tmp_path, caplog):
    import json
    import logging

    from armvision.train.logging import Progress, RunLogger

    p = Progress(4, every=2, desc="pretrain", use_bar=False)
    with caplog.at_level(logging.INFO, logger="armvision"):  # plain lines go through logging (--quiet hides them)
        for step in range(1, 5):
            p.update(step, loss=1.0 / step, lr=0.1) if step % 2 == 0 else p.update(step, lr=0.1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("pretrain step 2/4 ") and "eta" in lines[0]
    assert "loss 0.5 " in lines[0] and "lr 0.1 " in lines[0] and "loss 0.25 " in lines[1]
    log = RunLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        log.log({"loss": float(step)}, step)
    log.close()
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"kind": "train", "st')  # the torn last line of a killed run
    RunLogger(tmp_path, tensorboard=False, resume_step=2).close()
    assert [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_weight_decay_of_mamba_parameters_follows_the_reference_rule():
    """Issue 13: the docstring said A_log gets no decay; the code (and the reference's MAE-style groups: ndim <= 1,
    `.bias`, no_weight_decay()) decay A_log (2-D) and not D (1-D). Both now say the same; this pins the code."""
    import armvision

    m = armvision.create_pretrainer("tiny", embed_dim=16, depth=2, decoder_embed_dim=16, decoder_depth=1,
                                    img_size=16, patch_size=8, cluster_size=1)
    by_name = {n: g["weight_decay"] for g in param_groups(m, 0.05) for n in g["names"]}
    params = dict(m.named_parameters())
    for name, wd in by_name.items():
        ref = 0.0 if (params[name].ndim <= 1 or name.endswith(".bias") or name in m.no_weight_decay()) else 0.05
        assert wd == ref, name
    assert by_name["layers.0.mixer.A_log"] == 0.05 and params["layers.0.mixer.A_log"].ndim == 2
    assert by_name["layers.0.mixer.D"] == 0.0 and by_name["layers.0.mixer.in_proj.weight"] == 0.05
    assert "A_log" not in param_groups.__doc__.split("Everything else")[0]  # not listed among the no-decay ones
