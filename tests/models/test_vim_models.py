"""block="vim" on the model family: Vim's mixer-only blocks, one causal direction when pretraining with ARM, two
(row-major forward and backward around the middle cls token) in the classifier; checkpoint conversion between them,
clear errors across block kinds, and the parameter-matched config."""
import argparse
import dataclasses

import pytest
import torch

import armvision
from armtest import fit_steps, tiny_classifier, tiny_pretrainer
from armvision.cli._config import add_config_arguments, resolve_config
from armvision.errors import CheckpointError, ConfigError
from armvision.models import build_model, load_checkpoint, load_model, make_config
from armvision.models import infer_config, state_dict_kind
from armvision.models import vim_matched_config
from armvision.nn import MambaMixer, MambaMLPBlock, VimBlock
from armvision.train.config import FinetuneConfig, PretrainConfig


def mixers(model):
    return [m for m in model.modules() if isinstance(m, MambaMixer)]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_the_flag_reaches_the_model():
    for cls in (PretrainConfig, FinetuneConfig):
        p = argparse.ArgumentParser()
        add_config_arguments(p, cls)
        assert "--block" in p.format_help()
        cfg = resolve_config(cls, p.parse_args(["--model", "tiny", "--block", "vim"]))
        assert cfg.model.block == "vim"
        assert resolve_config(cls, p.parse_args([])).model.block == "mambamlp"  # the default is unchanged
        with pytest.raises(SystemExit):  # argparse refuses a block that does not exist
            p.parse_args(["--block", "mlp"])


def test_vim_pretrainer_is_causal_one_direction_and_trains():
    torch.manual_seed(0)
    model = tiny_pretrainer(block="vim", expand=2)
    assert all(isinstance(layer, VimBlock) for layer in model.layers)
    assert all(m.directions == 1 and m.d_inner == 64 for m in mixers(model))
    assert not any(k.startswith("layers.") and ".mlp." in k for k in model.state_dict())  # (the decoder has MLPs)
    losses = fit_steps(model, torch.randn(4, 3, 32, 32), steps=5, lr=1e-3)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_vim_pretrainer_encoder_is_causal():
    """The encoder output at sequence position t does not change when later tokens change."""
    torch.manual_seed(1)
    model = tiny_pretrainer(block="vim").eval()
    x = torch.randn(1, 20, 32)
    y = model.run_layers(x)[-1]
    x2 = x.clone()
    x2[:, 12:] += 1.0
    torch.testing.assert_close(model.run_layers(x2)[-1][:, :12], y[:, :12])


def test_vim_classifier_scans_two_directions_around_the_middle_cls():
    torch.manual_seed(2)
    model = tiny_classifier(block="vim").eval()
    assert model.directions == 2 and all(m.directions == 2 for m in mixers(model))
    names = set(model.state_dict())
    assert "layers.0.mixer.A_b_log" in names and not any("_c" in k for k in names)
    assert {"layers.0.norm.weight", "norm_f.weight", "cls_token"} <= names
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 3)
    tokens = model.forward_tokens(x)
    x2 = x.clone()
    x2[..., -8:, -8:] += 1.0  # the last patch: the backward scan carries it to the cls token in the middle
    assert not torch.allclose(model.forward_tokens(x2)[:, 8], tokens[:, 8])


def test_default_blocks_and_names_unchanged():
    for model in (tiny_pretrainer(), tiny_classifier()):
        assert model.config.block == "mambamlp"
        assert all(isinstance(layer, MambaMLPBlock) for layer in model.layers)
        assert {"layers.0.norm1.weight", "layers.0.norm2.weight", "layers.0.mlp.w1.weight"} <= set(model.state_dict())
    assert tiny_classifier().directions == 4


def test_vim_pretraining_checkpoint_finetunes_with_the_directions_copied():
    torch.manual_seed(3)
    pre, cls = tiny_pretrainer(depth=2, block="vim"), tiny_classifier(block="vim")
    src = pre.state_dict()
    report = load_checkpoint(cls, {"model": src})
    assert any("2 directions" in c for c in report.converted)
    got = cls.state_dict()
    for i in range(2):
        for first, extra in [("A_log", "A_b_log"), ("D", "D_b"), ("conv1d.weight", "conv1d_b.weight"),
                             ("x_proj.weight", "x_proj_b.weight"), ("dt_proj.bias", "dt_proj_b.bias")]:
            assert torch.equal(got[f"layers.{i}.mixer.{first}"], src[f"layers.{i}.mixer.{first}"])
            assert torch.equal(got[f"layers.{i}.mixer.{extra}"], src[f"layers.{i}.mixer.{first}"])
        assert torch.equal(got[f"layers.{i}.norm.weight"], src[f"layers.{i}.norm.weight"])


def test_vim_classifier_checkpoint_is_recognised_and_resized(tmp_path):
    torch.manual_seed(4)
    cls = tiny_classifier(block="vim")
    sd = cls.state_dict()
    assert state_dict_kind(sd) == "classifier"
    inferred = infer_config(sd)
    assert inferred["block"] == "vim" and inferred["kind"] == "classifier"
    bigger = tiny_classifier(block="vim", img_size=48)
    report = load_checkpoint(bigger, {"model": sd})
    assert any("cls slot kept" in r for r in report.resized)
    assert torch.equal(bigger.layers[1].mixer.A_b_log, cls.layers[1].mixer.A_b_log)
    with pytest.raises(CheckpointError, match="finetuned classifier"):  # not back into a pretrainer
        load_checkpoint(tiny_pretrainer(depth=2, block="vim"), {"model": sd})


def test_load_model_keeps_the_block_when_changing_kind():
    pre = tiny_pretrainer(depth=2, block="vim")
    for ckpt in ({"model": pre.state_dict()},  # a foreign state dict: the block is read off the names
                 {"model": pre.state_dict(), "model_config": pre.config.__dict__ | {"kind": "pretrainer"}}):
        model, _ = load_model(ckpt, kind="classifier", num_classes=3, img_size=32)
        assert model.config.block == "vim" and model.directions == 2


@pytest.mark.parametrize("saved,built", [("mambamlp", "vim"), ("vim", "mambamlp")])
def test_a_checkpoint_of_the_other_block_is_one_clear_error(saved, built):
    sd = tiny_pretrainer(depth=2, block=saved).state_dict()
    match = f"block mismatch: the checkpoint has {saved} blocks .* block='{built}'; build it with block='{saved}'"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tiny_classifier(block=built), {"model": sd})
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tiny_pretrainer(depth=2, block=built), {"model": sd})
    with pytest.raises(CheckpointError, match=match):  # the timm-style function too
        armvision.models.checkpoint_filter_fn(sd, tiny_classifier(block=built))


def test_mae_runs_with_vim_blocks():
    model = armvision.models.create_mae("tiny", embed_dim=32, depth=2, img_size=32, patch_size=8,
                                        decoder_embed_dim=32, block="vim")
    assert isinstance(model.layers[0], VimBlock)
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32)).loss)


@pytest.mark.parametrize("size,overrides", [
    ("base", {}),
    ("tiny", dict(embed_dim=48, depth=4, img_size=32, patch_size=4)),  # the study's tiny model
])
def test_vim_matched_config_matches_the_parameter_count(size, overrides):
    for kind, extra in (("pretrainer", dict(decoder_embed_dim=48) if overrides else {}), ("classifier", {})):
        cfg = make_config(kind, size, **overrides, **extra)
        vim = vim_matched_config(cfg)
        assert vim.block == "vim" and vim.expand == 2 and vim.embed_dim == cfg.embed_dim and vim.depth > cfg.depth
        assert cfg.block == "mambamlp" and cfg.depth == (overrides or {}).get("depth", 12)  # the input is untouched
        with torch.device("meta"):
            ours, theirs = n_params(build_model(cfg)), n_params(build_model(vim))
        assert abs(theirs - ours) / ours < 0.03, (kind, ours, theirs)
    assert vim_matched_config(make_config("classifier", "base")).depth == 21


def test_vim_matched_config_scales_feature_layers_and_refuses_vim():
    cfg = make_config("pretrainer", "base", feature_layers=[3, 6, 9, 12])
    vim = vim_matched_config(cfg)
    assert vim.feature_layers[-1] == vim.depth and vim.feature_layers == sorted(set(vim.feature_layers))
    small = dataclasses.replace(vim, embed_dim=32, decoder_embed_dim=32, img_size=32, patch_size=8, cluster_size=2)
    assert build_model(small).feature_layers == vim.feature_layers  # a valid pretrainer
    with pytest.raises(ConfigError, match="block='vim'"):
        vim_matched_config(vim)
