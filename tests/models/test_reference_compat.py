"""Weights saved by the reference ARM code give the reference's numbers (fixtures made by running it)."""
import torch

import armvision
from armvision.fields import as_hw
from armvision.models import infer_config

from armtest import load_fixture


def build_from_expected(expected, kind):
    cfg = dict(expected["config"])
    return armvision.create_pretrainer("base", **cfg) if kind == "pretrainer" else armvision.create_classifier("base", **cfg)


def test_pretrainer_loss_matches_reference(fixtures_dir):
    expected = load_fixture("reference_pretrain_expected.pth")
    model = build_from_expected(expected, "pretrainer").eval()
    report = armvision.load_checkpoint(model, fixtures_dir / "reference_pretrain_checkpoint.pth")
    assert report.source == "pretrainer" and not report.missing and not report.unexpected
    with torch.no_grad():
        out = model(expected["input"])
    assert abs(out.loss.item() - expected["loss"].item()) < 1e-4
    torch.testing.assert_close(out.loss_per_patch.mean(0), expected["loss_per_target_patch"], atol=1e-4, rtol=0)


def test_classifier_logits_match_reference(fixtures_dir):
    expected = load_fixture("reference_finetune_expected.pth")
    model = build_from_expected(expected, "classifier").eval()
    report = armvision.load_checkpoint(model, fixtures_dir / "reference_finetune_checkpoint.pth")
    assert report.source == "classifier" and not report.missing and not report.unexpected
    with torch.no_grad():
        logits = model(expected["input"])
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=0)


def test_load_model_infers_the_reference_geometry(fixtures_dir):
    expected = load_fixture("reference_pretrain_expected.pth")
    model, _ = armvision.load_model(fixtures_dir / "reference_pretrain_checkpoint.pth")
    for k, v in expected["config"].items():
        assert getattr(model.config, k) == (as_hw(v) if k == "img_size" else v)  # sizes are held as (h, w)
    assert model.cluster_size == 4 and model.num_clusters == 9
    with torch.no_grad():
        assert abs(model.eval()(expected["input"]).loss.item() - expected["loss"].item()) < 1e-4
    ft, _ = armvision.load_model(fixtures_dir / "reference_finetune_checkpoint.pth")
    assert (ft.config.kind, ft.config.num_classes, ft.config.depth, ft.config.img_size) == ("classifier", 5, 2, (224, 224))


def test_reference_pretraining_checkpoint_into_classifier(fixtures_dir):
    """As the reference finetuning script: directions copied x4, decoder dropped, pos embed resampled 12x12 -> 14x14."""
    sd = load_fixture("reference_pretrain_checkpoint.pth")["model"]
    model = armvision.create_classifier("base", embed_dim=32, depth=12, num_classes=7)
    report = armvision.load_checkpoint(model, fixtures_dir / "reference_pretrain_checkpoint.pth")
    assert set(report.missing) == {"cls_token", "norm_f.weight", "norm_f.bias", "head.weight", "head.bias"}
    own = model.state_dict()
    for s in ("", "_b", "_c", "_c_b"):
        assert torch.equal(own[f"layers.3.mixer.conv1d{s}.weight"], sd["layers.3.mixer.conv1d.weight"])
        assert torch.equal(own[f"layers.3.mixer.x_proj{s}.weight"], sd["layers.3.mixer.x_proj.weight"])
        assert torch.equal(own[f"layers.3.mixer.dt_proj{s}.bias"], sd["layers.3.mixer.dt_proj.bias"])
        assert torch.equal(own[f"layers.3.mixer.A{s}_log"], sd["layers.3.mixer.A_log"])
        assert torch.equal(own[f"layers.3.mixer.D{s}"], sd["layers.3.mixer.D"])
    pe = own["pos_embed"]
    assert pe.shape == (1, 197, 32) and torch.all(pe[0, 98] == 0)
    grid = sd["pos_embed"].reshape(1, 12, 12, 32).permute(0, 3, 1, 2)
    manual = torch.nn.functional.interpolate(grid, size=(14, 14), mode="bicubic", align_corners=False)
    manual = manual.permute(0, 2, 3, 1).reshape(1, 196, 32)
    torch.testing.assert_close(torch.cat([pe[:, :98], pe[:, 99:]], 1), manual)
    assert model.head.weight.std() < 1e-3  # finetuning head init: trunc-normal std 2e-5


def test_infer_config_of_reference_files():
    cfg = infer_config(load_fixture("reference_pretrain_checkpoint.pth")["model"])
    assert cfg == dict(kind="pretrainer", embed_dim=32, in_chans=3, patch_size=16, depth=12, d_state=16, d_conv=4,
                       expand=1, decoder_embed_dim=64, decoder_depth=4, cluster_size=4, img_size=192)


def test_parameter_counts_equal_the_reference():
    counts = {"base": (85_031_656, 99_243_008), "large": (297_035_720, 303_721_696), "huge": (662_682_088, 659_128_064)}
    for size, (n_cls, n_pre) in counts.items():
        with torch.device("meta"):
            cls, pre = armvision.create_classifier(size), armvision.create_pretrainer(size)
        assert sum(p.numel() for p in cls.parameters()) == n_cls
        assert sum(p.numel() for p in pre.parameters() if p.requires_grad) == n_pre
