"""Config as data (issue 12 (1)): presets, flags generated from dataclass fields, nested and flat (older) YAML,
checkpoints whose config is the flat dict of earlier versions."""
import argparse
import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from armvision.cli._config import add_config_arguments, resolve_config
from armvision.errors import ConfigError
from armvision.fields import knob
from armvision.models import build_model
from armvision.models.config import SIZES, ClassifierConfig, MAEConfig, PretrainerConfig
from armvision.train.checkpoint import load_file
from armvision.train.config import (PRESETS, FinetuneConfig, PretrainConfig, config_from_dict, preset_names,
                                    save_config)
from armvision.train.distributed import DistInfo
from armvision.train.engine import Trainer
from armvision.train.optim import param_groups

from .conftest import Toy, fit

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The classifier parameter counts of the reference (ARM_SPEC.md), at 224 px with 1000 classes.
REFERENCE_PARAMS = {"base": 85_031_656, "large": 297_035_720, "huge": 662_682_088}

# config.yaml as runs before the nested config wrote it (flat; `model` is the size name)
OLD_PRETRAIN = """
data: null
num_workers: 8
mean: [0.485, 0.456, 0.406]
std: [0.229, 0.224, 0.225]
model: tiny
embed_dim: 32
depth: 2
img_size: 32
patch_size: 8
drop_path: 0.0
epochs: 1600
batch_size: 64
blr: 0.00015
lr: null
betas: [0.9, 0.95]
clip_grad: 3.0
output: runs/pretrain
min_scale: 0.2
cluster_size: 2
ordering: row
order_seed: 0
decoder_embed_dim: 32
decoder_depth: 2
decoder_num_heads: null
feature_layers: null
target: norm_pixel
method: arm
mask_ratio: 0.75
"""
NESTED_PRETRAIN = """
num_workers: 8
model:
  size: tiny
  embed_dim: 32
  depth: 2
  img_size: 32
  patch_size: 8
  cluster_size: 2
  decoder_embed_dim: 32
  decoder_depth: 2
"""


def _parse(cls, argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p, cls)
    return resolve_config(cls, p.parse_args(argv))


def _config_class(name):
    return FinetuneConfig if "finetune" in name else PretrainConfig


def test_presets_ship_with_the_package_and_match_the_repo_folder():
    names = sorted(p.stem for p in REPO_CONFIGS.glob("*.yaml"))
    assert preset_names() == names and PRESETS.resolve() == REPO_CONFIGS.resolve()
    for size in ("base", "large", "huge"):
        assert f"pretrain_{size}" in names and f"finetune_{size}" in names
    assert {"demo_pretrain", "demo_finetune", "study_tiny"} <= set(names)


@pytest.mark.parametrize("name", sorted(p.stem for p in REPO_CONFIGS.glob("*.yaml")))
def test_every_preset_loads_and_builds_its_model(name):
    cls = _config_class(name)
    by_name = _parse(cls, ["--config", name])
    by_path = _parse(cls, ["--config", str(REPO_CONFIGS / f"{name}.yaml")])
    assert by_name == by_path
    m = by_name.model
    assert isinstance(m, ClassifierConfig if cls is FinetuneConfig else PretrainerConfig)
    if m.size in REFERENCE_PARAMS:  # geometry only: no memory for the weights of the big ones
        assert (m.embed_dim, m.depth) == SIZES[m.size]
        with torch.device("meta"):
            model = build_model(dataclasses.replace(m, num_classes=1000, img_size=224) if cls is FinetuneConfig
                                else m)
        if cls is FinetuneConfig:
            assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMS[m.size]
    else:
        build_model(dataclasses.replace(m, num_classes=10) if cls is FinetuneConfig else m)


def test_reference_recipes_in_the_presets():
    base, large = _parse(PretrainConfig, ["--config", "pretrain_base"]), _parse(PretrainConfig,
                                                                                 ["--config", "pretrain_large"])
    assert base.batch_size * 8 == 2048 and large.batch_size * 8 == 1024
    assert base.epochs == large.epochs == 1600 and base.blr == 1.5e-4 and base.betas == [0.9, 0.95]
    ft_b, ft_l = _parse(FinetuneConfig, ["--config", "finetune_base"]), _parse(FinetuneConfig,
                                                                               ["--config", "finetune_large"])
    assert (ft_b.layer_decay, ft_b.model.drop_path_rate) == (0.65, 0.1)
    assert (ft_l.layer_decay, ft_l.model.drop_path_rate) == (0.75, 0.3)
    assert ft_b.batch_size * 8 == ft_l.batch_size * ft_l.accum_iter * 8 == 1024
    over = _parse(FinetuneConfig, ["--config", "finetune_large", "--drop-path", "0.2", "--model", "base"])
    assert over.model.drop_path_rate == 0.2 and (over.model.embed_dim, over.model.depth) == SIZES["base"]


def test_a_new_field_gets_a_flag_by_itself():
    @dataclasses.dataclass
    class MyModel(PretrainerConfig):
        my_width: int = knob(7, "a new model knob", check=lambda v: None if v > 0 else "must be > 0")

    @dataclasses.dataclass
    class MyRun(PretrainConfig):
        MODELS = {"arm": MyModel, "mae": MAEConfig}
        my_knob: float = knob(0.5, "a new training knob")

    p = argparse.ArgumentParser()
    add_config_arguments(p, MyRun)
    text = p.format_help()
    assert "--my-knob" in text and "a new training knob (default: 0.5)" in text
    assert "--my-width" in text and "a new model knob (ARM only) (default: 7)" in text
    cfg = resolve_config(MyRun, p.parse_args(["--my-knob", "2", "--my-width", "3", "--model", "tiny"]))
    assert cfg.my_knob == 2.0 and cfg.model.my_width == 3 and cfg.model.embed_dim == SIZES["tiny"][0]
    with pytest.raises(ConfigError, match="--my-width 0: must be > 0"):
        resolve_config(MyRun, p.parse_args(["--my-width", "0"]))


def test_old_flag_spellings_still_work():
    cfg = _parse(PretrainConfig, ["--model", "tiny", "--embed-dim", "32", "--depth", "2", "--img-size", "32",
                                  "--cluster-size", "2", "--drop-path", "0.1", "--method", "mae",
                                  "--mask-ratio", "0.5"])
    assert isinstance(cfg.model, MAEConfig) and cfg.method == "mae"
    assert (cfg.model.size, cfg.model.embed_dim, cfg.model.depth, cfg.model.img_size) == ("tiny", 32, 2, (32, 32))
    assert cfg.model.drop_path_rate == 0.1 and cfg.model.mask_ratio == 0.5
    assert _parse(PretrainConfig, ["--drop-path-rate", "0.2"]).model.drop_path_rate == 0.2


def test_nested_and_flat_old_yaml_give_the_same_config(tmp_path):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD_PRETRAIN)
    new.write_text(NESTED_PRETRAIN)
    a, b = _parse(PretrainConfig, ["--config", str(old)]), _parse(PretrainConfig, ["--config", str(new)])
    assert a == b and a.model.cluster_size == 2 and a.model.size == "tiny"
    assert a == PretrainConfig(model=PretrainerConfig(size="tiny", embed_dim=32, depth=2, img_size=32, patch_size=8,
                                                      cluster_size=2, decoder_embed_dim=32, decoder_depth=2),
                               num_workers=8)
    save_config(a, tmp_path / "config.yaml")  # what a run writes now reads back the same
    assert _parse(PretrainConfig, ["--config", str(tmp_path / "config.yaml")]) == a
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["kind"] == "pretrainer"
    # a size given later resets width and depth of the earlier layer (as `--model` did over a flat file)
    assert _parse(PretrainConfig, ["--config", str(new), "--model", "small"]).model.embed_dim == SIZES["small"][0]
    flat_ft = {"model": "tiny", "embed_dim": None, "depth": None, "num_classes": None, "drop_path": 0.1,
               "global_pool": True, "layer_decay": 0.7}
    ft = config_from_dict(FinetuneConfig, flat_ft)
    assert ft.model == ClassifierConfig(size="tiny", embed_dim=192, depth=12, num_classes=None, drop_path_rate=0.1,
                                        global_pool=True)


def test_unknown_keys_say_did_you_mean(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("embed_dimm: 48\n")
    with pytest.raises(ConfigError, match="unknown key 'embed_dimm'.*did you mean 'embed_dim'"):
        _parse(PretrainConfig, ["--config", str(y)])
    y.write_text("model:\n  cluster_sise: 2\n")
    with pytest.raises(ConfigError, match="unknown key 'model.cluster_sise'.*did you mean 'model.cluster_size'"):
        _parse(PretrainConfig, ["--config", str(y)])
    with pytest.raises(ConfigError, match="drop_pat.*did you mean 'drop_path'"):
        config_from_dict(FinetuneConfig, {"drop_pat": 0.1})
    with pytest.raises(ConfigError, match="no preset of that name.*pretrain_base"):
        _parse(PretrainConfig, ["--config", "pretrain_giant"])
    with pytest.raises(ConfigError, match="model.size='giant': choose one of"):
        config_from_dict(PretrainConfig, {"model": {"size": "giant"}})


def test_a_checkpoint_with_the_flat_config_of_earlier_versions_resumes(tmp_path):
    """The resume check reads the flat dict stored by earlier versions: same settings resume, changed ones do not."""
    data = TensorDataset(torch.randn(64, 4), torch.zeros(64, dtype=torch.long))
    quiet = dict(num_workers=0, progress=False, log_every=1, tensorboard=False, epochs=3, warmup_epochs=0, blr=0.1,
                 clip_grad=None, batch_size=8, output=str(tmp_path))

    def trainer(**kw):
        torch.manual_seed(0)
        return Trainer(PretrainConfig(**{**quiet, **kw}), DistInfo(), Toy(), data, lambda m, x, y: m(x).pow(2).mean(),
                       make_groups=lambda m: param_groups(m, 0.0))

    fit(trainer(max_steps=3))
    ck = load_file(tmp_path / "checkpoint-last.pth")
    ck["config"] = {**yaml.safe_load(OLD_PRETRAIN), "batch_size": 8, "blr": 0.1, "seed": 0, "accum_iter": 1}
    assert "model" in ck["config"] and isinstance(ck["config"]["model"], str)  # flat: `model: tiny`
    torch.save(ck, tmp_path / "checkpoint-last.pth")
    with pytest.raises(ConfigError, match="blr 0.1 -> 0.2"):
        fit(trainer(max_steps=6, resume="auto", blr=0.2))
    assert fit(trainer(max_steps=6, resume="auto"))["step"] == 6
