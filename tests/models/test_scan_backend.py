"""The scan backend as a model knob: `--scan-backend` (generated from the config field), YAML, the model config
reaching every Mamba mixer, and configs saved before the field existed."""
import argparse
import dataclasses

import pytest

from armvision.cli._config import add_config_arguments, resolve_config
from armvision.errors import ConfigError
from armvision.models import build_model
from armvision.models.config import BackboneConfig, config_from_dict, make_config
from armvision.nn import MambaMixer
from armvision.train.config import FinetuneConfig, PretrainConfig

TINY = ["--model", "tiny", "--embed-dim", "16", "--depth", "2", "--img-size", "32", "--patch-size", "8"]


def _parse(cls, argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p, cls)
    return resolve_config(cls, p.parse_args(argv))


def _backends(model):
    return {m.scan_backend for m in model.modules() if isinstance(m, MambaMixer)}


@pytest.mark.parametrize("cls,extra", [(PretrainConfig, ["--cluster-size", "2"]), (FinetuneConfig, ["--num-classes", "3"])])
def test_the_flag_reaches_every_mixer(cls, extra):
    cfg = _parse(cls, [*TINY, *extra, "--scan-backend", "torch"])
    assert cfg.model.scan_backend == "torch"
    assert _backends(build_model(cfg.model)) == {"torch"}
    assert _backends(build_model(_parse(cls, [*TINY, *extra]).model)) == {"auto"}


def test_a_bad_value_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit):
        _parse(PretrainConfig, ["--scan-backend", "gpu"])
    (tmp_path / "c.yaml").write_text("model:\n  scan_backend: gpu\n")
    with pytest.raises(ConfigError, match="scan_backend.*gpu.*choose one of auto, ref, torch, cpu, triton, cuda"):
        _parse(PretrainConfig, ["--config", str(tmp_path / "c.yaml")])


def test_configs_saved_before_the_field_default_to_auto():
    saved = dataclasses.asdict(make_config("classifier", "tiny", embed_dim=16, depth=1, img_size=32, patch_size=8))
    del saved["scan_backend"]
    assert config_from_dict(BackboneConfig, saved).scan_backend == "auto"
