"""Every model knows its recipe: whatever builds it (a factory, build_model as finetuning does, load_model,
from_pretrained, convert), its pretrained_cfg is its own config's data recipe, so timm's resolve_data_config gives
the transform it was trained for; the class names travel as `label_names` (checkpoint dict, config.json, and
model.pretrained_cfg["label_names"])."""
import dataclasses
import json
import logging

import pytest
import torch
from timm.data import create_transform, resolve_data_config
from torchvision import transforms as T

import armvision
from armtest import tiny_classifier
from armvision.models import FAMILIES, make_config
from armvision.models.convert import convert_checkpoint
from armvision.train.finetune import build_classifier

NAMES = ["zero", "one", "two"]


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_built_models_carry_their_configs_recipe(kind):
    extra = dict(cluster_size=2) if kind == "pretrainer" else {}
    cfg = make_config(kind, "tiny", embed_dim=16, depth=1, img_size=[32, 48], patch_size=8, in_chans=1, **extra)
    m = armvision.build_model(cfg)
    pc = m.pretrained_cfg
    assert m.default_cfg is pc and pc["input_size"] == (1, 32, 48) and pc["interpolation"] == "bicubic"
    assert pc["crop_pct"] == 0.875 and pc["mean"] == (0.485, 0.456, 0.406) and pc["first_conv"] == "patch_embed.proj"
    assert pc["fixed_input_size"] is (kind != "classifier")  # the pretrainers refuse other sizes
    assert pc["num_classes"] == (1000 if kind == "classifier" else 0)


def test_finetuning_builds_a_classifier_with_its_recipe():
    class Run:  # what build_classifier reads of a FinetuneConfig
        model = make_config("classifier", "tiny", embed_dim=16, depth=1, img_size=64, patch_size=8, num_classes=None)

    m = build_classifier(Run, 7)
    assert m.pretrained_cfg["input_size"] == (3, 64, 64) and m.pretrained_cfg["num_classes"] == 7


@pytest.fixture()
def trained(tmp_path):
    """A classifier at 64 px saved as a training checkpoint with its class names."""
    torch.manual_seed(0)
    m = tiny_classifier(img_size=64)
    path = tmp_path / "checkpoint-last.pth"
    torch.save({"model": m.state_dict(), "model_config": dataclasses.asdict(m.config),
                "label_names": NAMES}, path)
    return m, path


def test_load_model_gives_the_transform_the_model_was_trained_for(trained):
    _, path = trained
    m, _ = armvision.load_model(path)
    assert m.pretrained_cfg["input_size"] == (3, 64, 64) and m.pretrained_cfg["label_names"] == NAMES
    data = resolve_data_config(model=m)
    assert data["input_size"] == (3, 64, 64) and data["crop_pct"] == 0.875 and data["interpolation"] == "bicubic"
    tf = create_transform(**data)
    resize = next(t for t in tf.transforms if isinstance(t, T.Resize))
    crop = next(t for t in tf.transforms if isinstance(t, T.CenterCrop))
    assert resize.size in (73, [73]) and tuple(crop.size) == (64, 64)  # 64 / 0.875, then the centre 64


def test_label_names_survive_save_pretrained_from_pretrained_and_convert(trained, tmp_path):
    _, path = trained
    m, _ = armvision.load_model(path)
    armvision.save_pretrained(m, tmp_path / "saved", model_card=False)
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["label_names"] == NAMES
    again = armvision.from_pretrained(tmp_path / "saved")
    assert again.pretrained_cfg["label_names"] == NAMES and again.pretrained_cfg["input_size"] == (3, 64, 64)
    converted, _, out = convert_checkpoint(path, tmp_path / "converted")
    assert converted.pretrained_cfg["label_names"] == NAMES
    assert json.loads((out / "config.json").read_text())["label_names"] == NAMES
    at96, _, _ = convert_checkpoint(path, tmp_path / "at96", img_size=96)
    assert at96.pretrained_cfg["input_size"] == (3, 96, 96)


def test_label_names_that_do_not_fit_are_ignored_with_a_warning(trained, tmp_path, caplog):
    m, _ = trained
    sd = m.state_dict()
    cfg = dataclasses.asdict(m.config)
    for bad, why in ((["a", "b"], "2 label_names for a 3-class head"), ([1, 2, 3], "not a list of class names")):
        path = tmp_path / "bad.pth"
        torch.save({"model": sd, "model_config": cfg, "label_names": bad}, path)
        with caplog.at_level(logging.WARNING, logger="armvision"):
            loaded, _ = armvision.load_model(path)
        assert "label_names" not in loaded.pretrained_cfg and why in caplog.text and str(path) in caplog.text
    fewer, _ = armvision.load_model(tmp_path / "bad.pth", num_classes=5, strict=False)  # (a new head)
    assert "label_names" not in fewer.pretrained_cfg
