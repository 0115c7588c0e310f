"""timm conventions, driven through timm's own functions (create_model, resolve_data_config, create_transform,
features_only, param_groups_layer_decay, create_optimizer_v2) on tiny models."""
import re
from pathlib import Path

import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config
from timm.optim import create_optimizer_v2

try:
    from timm.optim import param_groups_layer_decay
except ImportError:  # timm < 1.0.10 kept it in optim_factory
    from timm.optim.optim_factory import param_groups_layer_decay
from torchvision import transforms as T

import armvision
from armtest import tiny_classifier, tiny_pretrainer
from armvision.train.optim import param_groups

TINY = dict(img_size=32, patch_size=8, embed_dim=16, depth=3)


def transform_sizes(tf):
    resize = next(t for t in tf.transforms if isinstance(t, T.Resize))
    crop = next(t for t in tf.transforms if isinstance(t, T.CenterCrop))
    return resize.size, crop.size, resize.interpolation


@pytest.mark.parametrize("name,file,num_classes", [("arm_base", "arm_base_finetuned.pth", 1000),
                                                   ("arm_base.arm_in1k", "arm_base_pretrain.pth", 0),
                                                   ("arm_large", "arm_large_finetuned.pth", 1000),
                                                   ("arm_huge.arm_in1k", "arm_huge_pretrain.pth", 0)])
def test_pretrained_cfg_and_data_config(name, file, num_classes):
    # pretrained_cfg is registered and resolvable without building the (large) model
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    assert cfg["input_size"] == (3, 224, 224) and cfg["first_conv"] == "patch_embed.proj"
    assert cfg["hf_hub_id"] == "OliverRen/ARM" and cfg["hf_hub_filename"] == file
    assert cfg["classifier"] == "head" and cfg["num_classes"] == num_classes
    data = resolve_data_config(pretrained_cfg=cfg)
    assert data["input_size"] == (3, 224, 224) and data["interpolation"] == "bicubic"
    assert data["mean"] == (0.485, 0.456, 0.406) and data["crop_pct"] == 0.875
    r, c, interp = transform_sizes(create_transform(**data))
    assert r in (256, [256]) and tuple(c) == (224, 224) and interp == T.InterpolationMode.BICUBIC


def test_model_carries_pretrained_cfg_and_data_config():
    m = timm.create_model("arm_tiny", **TINY)
    assert m.pretrained_cfg["input_size"] == (3, 224, 224) and m.default_cfg is m.pretrained_cfg  # timm's: the cfg
    assert "hf_hub_id" not in m.pretrained_cfg  # no official tiny weights
    assert {"arm_base", "arm_small", "arm_huge"} <= set(timm.list_models("arm_*"))
    # armvision's own models carry the recipe of their config: the pretrainer takes 192 px only
    p = armvision.create_pretrainer("tiny", embed_dim=16, depth=1, decoder_embed_dim=16)
    assert p.pretrained_cfg["input_size"] == (3, 192, 192) and p.pretrained_cfg["fixed_input_size"] is True
    data = resolve_data_config(model=p)
    assert data["input_size"] == (3, 192, 192) and data["interpolation"] == "bicubic" and data["crop_pct"] == 0.875


def test_forward_features_tokens_and_head():
    torch.manual_seed(0)
    m = timm.create_model("arm_tiny", num_classes=5, **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape == (2, 1 + 16, 16) and m.num_prefix_tokens == 1 and m.num_features == 16
        seq = m.forward_tokens(x)  # the order the model runs: cls at index 8 of 17
        torch.testing.assert_close(f[:, 0], seq[:, 8])  # cls first ...
        torch.testing.assert_close(f[:, 1:], torch.cat([seq[:, :8], seq[:, 9:]], 1))  # ... then raster patches
        pooled = m.forward_head(f, pre_logits=True)
        torch.testing.assert_close(pooled, f[:, 0])
        torch.testing.assert_close(m(x), m.get_classifier()(pooled))
        torch.testing.assert_close(m.forward_head(f), m(x))
    assert m.global_pool == "token"
    m.reset_classifier(3, global_pool="avg")
    assert m.global_pool == "avg" and m.config.global_pool is True and m.num_classes == 3
    with torch.no_grad():
        torch.testing.assert_close(m.forward_head(f, pre_logits=True), f[:, 1:].mean(1))  # N even: plain mean
        assert m(x).shape == (2, 3)
    avg = timm.create_model("arm_tiny", global_pool="avg", **TINY)
    assert avg.config.global_pool is True
    m.reset_classifier(0)
    assert isinstance(m.get_classifier(), torch.nn.Identity) and m(x).shape == (2, 16)


def test_reset_classifier_keeps_device_and_dtype():
    m = tiny_classifier().to(torch.float64)
    m.reset_classifier(7)
    assert m.head.weight.dtype == torch.float64 and m.head.weight.device == m.cls_token.device
    assert m(torch.randn(1, 3, 32, 32, dtype=torch.float64)).shape == (1, 7)
    assert 0 < m.head.weight.std() < 1e-4  # the reference head init


def test_forward_intermediates_classifier():
    torch.manual_seed(0)
    m = tiny_classifier(depth=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, maps = m.forward_intermediates(x, indices=[0, -1], norm=True)
        assert [t.shape for t in maps] == [(2, 32, 4, 4)] * 2
        torch.testing.assert_close(final, m.forward_features(x))
        # the last block, normed, in raster order: the patch tokens of forward_features as a map
        torch.testing.assert_close(maps[1], final[:, 1:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2))
        nlc = m.forward_intermediates(x, indices=2, output_fmt="NLC", intermediates_only=True)
        assert [t.shape for t in nlc] == [(2, 16, 32)] * 2
        with_cls = m.forward_intermediates(x, indices=1, norm=True, return_prefix_tokens=True, intermediates_only=True)
        torch.testing.assert_close(with_cls[0][1][:, 0], final[:, 0])
    take = m.prune_intermediate_layers([0, 1])
    assert take == [0, 1] and len(m.layers) == 2 and isinstance(m.head, torch.nn.Identity)


def test_features_only_through_timm():
    torch.manual_seed(0)
    fm = timm.create_model("arm_tiny", features_only=True, out_indices=(0, 1), **TINY).eval()
    assert fm.feature_info.channels() == [16, 16] and fm.feature_info.reduction() == [8, 8]
    assert len(fm.model.layers) == 2  # pruned after the last wanted block
    with torch.no_grad():
        outs = fm(torch.randn(2, 3, 32, 32))
    assert [o.shape for o in outs] == [(2, 16, 4, 4)] * 2


@pytest.mark.parametrize("ordering", ["row", "column", "random"])
def test_pretrainer_maps_are_in_raster_order(ordering):
    torch.manual_seed(0)
    m = tiny_pretrainer(ordering=ordering, order_seed=1).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        seq = m.encoder_outputs(x, layers=[2, 4])  # cluster (sequence) order
        maps = m.forward_intermediates(x, indices=[1, 3], intermediates_only=True)
        feats = m.forward_features(x)
    h, w = m.grid_size
    for s, mp in zip(seq, maps):
        assert mp.shape == (2, 32, h, w)
        for pos, raster in enumerate(m.token_order.tolist()):  # sequence position `pos` holds patch `raster`
            torch.testing.assert_close(mp[:, :, raster // w, raster % w], s[:, pos])
    torch.testing.assert_close(feats, maps[1].flatten(2).transpose(1, 2))
    assert feats.shape == (2, 16, 32) and m.num_prefix_tokens == 0


def test_pretrainer_and_mae_feature_maps():
    """The pretrainers are not timm models, but keep timm's feature interface (cluster order undone)."""
    torch.manual_seed(0)
    pre = armvision.create_pretrainer("tiny", img_size=32, patch_size=8, cluster_size=2, depth=3, embed_dim=16,
                                      decoder_embed_dim=16, ordering="column").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        (out,) = pre.forward_intermediates(x, indices=(-1,), intermediates_only=True)
        ref = pre.forward_features(x)
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), ref)
    mae = armvision.create_mae("tiny", embed_dim=16, depth=2, img_size=32, patch_size=8, decoder_embed_dim=16).eval()
    with torch.no_grad():
        maps = mae.forward_intermediates(x, indices=1, output_fmt="NLC", intermediates_only=True)
        torch.testing.assert_close(maps[0], mae.forward_features(x))


@pytest.mark.parametrize("kind", ["classifier", "pretrainer"])
def test_grad_checkpointing_gives_the_same_gradients_and_saves_activations(kind):
    def make():
        torch.manual_seed(0)
        if kind == "classifier":
            return tiny_classifier(depth=3, drop_path_rate=0.2).train()  # drop path: RNG replayed on recompute
        return tiny_pretrainer().train()

    x = torch.randn(2, 3, 32, 32)

    def step(model):
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        torch.manual_seed(1)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
            loss = out.sum() if kind == "classifier" else out.loss
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, sum(saved)

    plain, ckpt = make(), make()
    ckpt.set_grad_checkpointing(True)
    l1, g1, bytes_plain = step(plain)
    l2, g2, bytes_ckpt = step(ckpt)
    torch.testing.assert_close(l1, l2)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], atol=1e-6, rtol=1e-5, msg=n)
    # activations inside the blocks are not kept for backward (the pretrainer's attention decoder still keeps its own)
    assert bytes_ckpt < bytes_plain * (0.5 if kind == "classifier" else 0.7)


@pytest.mark.parametrize("layer_decay", [0.65, 0.75])
def test_timm_layer_decay_equals_ours(layer_decay):
    m = tiny_classifier(depth=4)

    def per_param(groups, names_key):
        out = {}
        for g in groups:
            names = g[names_key] if names_key else [n for p in g["params"] for n, q in m.named_parameters() if q is p]
            for n in names:
                out[n] = (round(g["lr_scale"], 12), g["weight_decay"])
        return out

    ours = per_param(param_groups(m, 0.05, layer_decay=layer_decay), "names")
    theirs = per_param(param_groups_layer_decay(m, 0.05, no_weight_decay_list=m.no_weight_decay(),
                                                layer_decay=layer_decay), None)
    assert ours == theirs and len(ours) == len(list(m.parameters()))
    assert ours["head.weight"] == (1.0, 0.05) and ours["cls_token"][1] == 0.0
    assert ours["patch_embed.proj.weight"][0] == round(layer_decay ** 5, 12)
    opt = create_optimizer_v2(m, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=layer_decay)
    assert per_param(opt.param_groups, None) == ours
    # without layer decay: timm's weight-decay groups (lr_scale absent = 1) are ours too
    plain = create_optimizer_v2(m, "adamw", lr=1e-3, weight_decay=0.05)
    for g in plain.param_groups:
        g.setdefault("lr_scale", 1.0)
    assert per_param(plain.param_groups, None) == per_param(param_groups(m, 0.05), "names")


def test_registry_uses_public_timm_api_only():
    src = (Path(armvision.__file__).parent / "models" / "registry.py").read_text()
    assert not re.search(r"timm\.\w+\._|from timm\.models\._", src)
