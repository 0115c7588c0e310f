"""The conventions timm's own model tests check (its repository's tests/test_models.py), as our tests, on every
registered arm_* entry and tag built tiny: tensor forward with the batch first, backward reaching every parameter,
num_classes=0 / reset_classifier(0), num_features / head_hidden_size, the pretrained_cfg's names and input size,
features_only and forward_intermediates, torch.fx tracing (plain and timm's feature extraction) equal to eager,
in_chans adaptation and a new head named in the load report, pretrained_cfg_overlay and checkpoint_key, and the
family under one module name. docs/timm.md runs timm's own file on the full-size entries."""
import logging
import re
from pathlib import Path

import pytest
import timm
import torch
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import armvision
from armvision.errors import ConfigError
from armvision.models import SIZES, registry

TINY = dict(embed_dim=32, depth=3, img_size=32, patch_size=8)
ENTRIES = timm.list_models(module="registry")
TAGGED = timm.list_models(module="registry", include_tags=True)


def tiny(name, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, **{**TINY, **kw})


def timm_tracer_kwargs():
    return dict(leaf_modules=timm.models.get_notrace_modules(), autowrap_functions=timm.models.get_notrace_functions())


def test_the_family_is_one_module_of_plain_entry_points():
    assert ENTRIES == sorted(f"arm_{s}" for s in SIZES)  # one entry point per size
    official = {f"arm_{s}.{t}" for s in ("base", "large", "huge") for t in ("arm_in1k", "arm_in1k_ft_in1k")}
    assert set(TAGGED) == {"arm_tiny", "arm_small"} | official
    src = (Path(armvision.__file__).parent / "models" / "registry.py").read_text()
    for name in ENTRIES:  # a reader finds each by grep, as in timm's model files
        assert re.search(rf"@register_model\ndef {name}\(pretrained: bool = False", src)
    assert "globals()" not in src
    assert timm.models.get_pretrained_cfg("arm_base").tag == "arm_in1k_ft_in1k"  # the first tag is the default
    hubconf = (Path(__file__).resolve().parents[2] / "hubconf.py").read_text()  # torch.hub: the same, plain
    for size in SIZES:
        assert f"def arm_{size}(pretrained=False" in hubconf and f"def arm_{size}_pretrain(pretrained=False" in hubconf


@pytest.mark.parametrize("name", TAGGED)
def test_forward_is_a_tensor_batch_first_and_grad_checkpointing_keeps_it(name):
    m = tiny(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = m(x)
        m.set_grad_checkpointing()
        again = m(x)
    n = m.pretrained_cfg["num_classes"]
    assert isinstance(out, torch.Tensor) and out.shape == (2, n or m.num_features) and not out.isnan().any()
    torch.testing.assert_close(out, again, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ENTRIES)
def test_backward_reaches_every_parameter(name):
    m = tiny(name, num_classes=42).train()
    out = m(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 42)
    out.mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", ["arm_tiny", "arm_base.arm_in1k"])
def test_headless_models_give_num_features(name):
    m = tiny(name).eval()
    x = torch.randn(1, 3, 32, 32)
    assert m.num_features == m.head_hidden_size == 32 and m.num_classes >= 0
    with torch.no_grad():
        tokens = m.forward_features(x)
        pre = m.forward_head(tokens, pre_logits=True)
        assert tokens.shape == (1, 1 + 16, m.num_features) and pre.shape == (1, m.head_hidden_size)
        m.reset_classifier(0)
        assert m.num_classes == 0
        torch.testing.assert_close(m(x), pre)
        headless = tiny(name, num_classes=0).eval()
        assert headless.num_classes == 0 and headless(x).shape == (1, headless.num_features)
    assert timm.create_model("arm_base.arm_in1k", embed_dim=32, depth=1).num_classes == 0  # the pretraining tag


@pytest.mark.parametrize("name", TAGGED)
def test_pretrained_cfg_names_the_models_own_parameters(name):
    m = tiny(name)
    cfg, sd = m.pretrained_cfg, m.state_dict()
    assert f"{cfg['first_conv']}.weight" in sd
    if cfg["num_classes"]:
        assert f"{cfg['classifier']}.weight" in sd
    assert not cfg.get("fixed_input_size")  # the classifier takes any multiple of the patch size
    with torch.no_grad():
        assert m(torch.randn(1, 3, 48, 64)).shape[0] == 1


def test_fixed_input_size_says_what_the_pretrainers_refuse():
    pre = armvision.create_pretrainer("tiny", embed_dim=16, depth=1, decoder_embed_dim=16, img_size=32, patch_size=8,
                                      cluster_size=2)
    assert pre.pretrained_cfg["fixed_input_size"] is True and pre.pretrained_cfg["input_size"] == (3, 32, 32)
    with pytest.raises(ConfigError, match="built for 32x32 images"):
        pre(torch.randn(1, 3, 48, 48))


@pytest.mark.parametrize("name", ENTRIES)
def test_features_only_and_forward_intermediates(name):
    fm = tiny(name, features_only=True).eval()  # timm's default for the family: the last 3 blocks
    assert fm.feature_info.channels() == [32] * 3 and fm.feature_info.reduction() == [8] * 3
    m = tiny(name).eval()
    x = torch.randn(1, 3, 48, 32)
    with torch.no_grad():
        outs = fm(x)
        final, maps = m.forward_intermediates(x)
        torch.testing.assert_close(final, m.forward_features(x))
    assert [o.shape for o in outs] == [(1, 32, 6, 4)] * 3
    assert len(maps) == len(m.feature_info) == 3 and all(t.shape == (1, 32, 6, 4) for t in maps)


@pytest.mark.parametrize("block,size", [("mambamlp", 32), ("mambamlp", 48), ("vim", 32)])
def test_symbolic_trace_equals_eager(block, size):
    m = tiny("arm_tiny", block=block, num_classes=5).eval()
    x = torch.randn(2, 3, size, size)
    g = torch.fx.symbolic_trace(m)
    with torch.no_grad():
        assert torch.equal(g(x), m(x))  # at the model's size and at another (the position table resampled)
    assert "run_mixer" in g.code and "image_grid" in g.code  # the scan dispatch and shape checks stay calls
    with pytest.raises(ConfigError, match="takes 3-channel images"):
        g(torch.randn(1, 1, 32, 32))  # the traced graph still checks its input


def test_symbolic_trace_trains():
    m = tiny("arm_tiny", num_classes=7).train()
    g = torch.fx.symbolic_trace(m)
    g(torch.randn(2, 3, 32, 32)).mean().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_timms_fx_feature_extraction():
    m = tiny("arm_tiny", num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    train_nodes, eval_nodes = get_graph_node_names(m, tracer_kwargs=timm_tracer_kwargs())
    fx = create_feature_extractor(m, return_nodes={eval_nodes[-1]: "out", "layers.1": "mid"},
                                  tracer_kwargs=timm_tracer_kwargs())
    with torch.no_grad():
        got = fx(x)
        assert torch.equal(got["out"], m(x))
        want = m.forward_intermediates(x, indices=[1], intermediates_only=True)[0]  # (B, D, h, w), cls removed
    mid = got["mid"]  # the model's own sequence order: cls in the middle
    torch.testing.assert_close(torch.cat([mid[:, :8], mid[:, 9:]], 1), want.flatten(2).transpose(1, 2))
    fm = tiny("arm_tiny", features_only=True, feature_cls="fx", out_indices=(1, 2)).eval()
    with torch.no_grad():
        assert [o.shape for o in fm(x)] == [(1, 17, 32)] * 2  # timm's fx extractor: block outputs, as tokens


# ---- pretrained weights: in_chans, a new head, overlay and checkpoint_key ---------------------------------------
@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    """A tiny classifier (3 classes) saved as a training dict with different "model" and "model_ema" weights."""
    torch.manual_seed(0)
    m = timm.create_model("arm_tiny", num_classes=3, **TINY).eval()
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in m.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "cls.pth"
    torch.save({"model": m.state_dict(), "model_ema": ema, "model_config": None}, path)
    return m, path


def load(path, **kw):
    return tiny("arm_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kw).eval()


@pytest.mark.parametrize("in_chans", [1, 5, 6])
def test_in_chans_adapts_the_patch_embedding(saved_classifier, in_chans, caplog):
    src, path = saved_classifier
    with caplog.at_level(logging.INFO, logger="armvision"):
        m = load(path, in_chans=in_chans, num_classes=3)
    assert m.patch_embed.proj.weight.shape[1] == in_chans and m.pretrained_cfg["input_size"] == (3, 224, 224)
    assert f"patch_embed.proj.weight: 3 -> {in_chans} input channels" in caplog.text
    if in_chans % 3 and in_chans != 1:
        return  # (repeated filters are exact for multiples of 3 only)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():  # a gray image (or its copies) gives what the 3-channel model gives on gray RGB
        want = src.forward_features(x.expand(-1, 3, -1, -1))
        torch.testing.assert_close(m.forward_features(x.expand(-1, in_chans, -1, -1)), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_classes,what", [(5, "the model has 5"), (0, "the model has none (num_classes=0)")])
def test_a_new_head_is_initialised_and_named_in_the_load_report(saved_classifier, num_classes, what, caplog):
    src, path = saved_classifier
    with caplog.at_level(logging.INFO, logger="armvision"):
        m = load(path, num_classes=num_classes)
    assert f"head re-initialised: the checkpoint's is for 3 classes, {what}" in caplog.text
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_features(x), src.forward_features(x))  # the backbone is loaded
        assert m(x).shape == (1, num_classes or 32)


def test_overlay_and_checkpoint_key(saved_classifier):
    src, path = saved_classifier
    x = torch.randn(1, 3, 32, 32)
    plain, ema = load(path, num_classes=3), load(path, num_classes=3, checkpoint_key="model_ema")
    with torch.no_grad():
        torch.testing.assert_close(plain(x), src(x))
        assert not torch.allclose(ema(x), src(x))
    torch.testing.assert_close(ema.head.bias, src.head.bias + 0.01)
    assert plain.pretrained_cfg["file"] == str(path)  # the overlay is the model's pretrained_cfg, as in timm


def test_timms_entry_kwargs():
    with pytest.raises(ConfigError, match="drop_rate must be 0"):
        tiny("arm_tiny", drop_rate=0.1)
    assert tiny("arm_tiny", drop_rate=0.0).num_classes == 1000  # what timm's train.py passes by default
    assert tiny("arm_tiny", global_pool="avg").global_pool == "avg"
    with pytest.raises(ConfigError, match="global_pool must be 'token' or 'avg'"):
        tiny("arm_tiny", global_pool="max")


def test_fx_registrations_are_timms():
    fns, mods = timm.models.get_notrace_functions(), timm.models.get_notrace_modules()
    assert {registry.run_mixer, registry.image_grid, registry.pos_embed_for_grid} <= set(fns)
    assert armvision.nn.MambaMixer in mods
