import pytest
import timm
import torch

import armvision
from armtest import tiny_classifier
from armvision.errors import CheckpointError, ConfigError


def test_forward_shapes_and_cls_in_the_middle():
    torch.manual_seed(0)
    m = tiny_classifier().eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = m.forward_tokens(x)  # the order the model runs: cls at N//2
    assert tokens.shape == (2, 17, 32)
    feats = m.forward_features(x)  # timm order: cls first, then the raster patches
    torch.testing.assert_close(feats, torch.cat([tokens[:, 8:9], tokens[:, :8], tokens[:, 9:]], dim=1))
    torch.testing.assert_close(m.forward_head(feats, pre_logits=True), tokens[:, 8])
    torch.testing.assert_close(m(x), m.forward_head(feats))
    # the cls token enters at index N//2: its embedding only reaches the sequence there
    m2 = tiny_classifier().eval()
    m2.load_state_dict(m.state_dict())
    with torch.no_grad():
        m2.cls_token.add_(1.0)
        m2.pos_embed[:, 8].sub_(1.0)
    torch.testing.assert_close(m2(x), m(x), atol=1e-5, rtol=1e-5)


def test_global_pool_is_mean_of_the_two_halves():
    m = tiny_classifier(global_pool=True).eval()
    x = torch.randn(2, 3, 32, 32)
    t = m.forward_tokens(x)
    torch.testing.assert_close(m.forward_pooled(x), (t[:, :8].mean(1) + t[:, 9:].mean(1)) / 2)


def test_drop_path_schedule():
    m = tiny_classifier(depth=4, drop_path_rate=0.3)
    rates = [layer.drop_path.p for layer in m.layers]
    torch.testing.assert_close(torch.tensor(rates), torch.tensor([0.0, 0.0, 0.1, 0.2]))


def test_other_input_sizes_resample_the_position_embedding():
    m = tiny_classifier().eval()
    assert m(torch.randn(1, 3, 48, 40)).shape == (1, 3)
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        m(torch.randn(1, 3, 30, 32))


def test_reset_classifier_and_head_init():
    m = tiny_classifier()
    assert 0 < m.head.weight.std() < 1e-4 and torch.all(m.head.bias == 0)
    m.reset_classifier(7)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_timm_registration():
    m = timm.create_model("arm_tiny", num_classes=4, img_size=32, patch_size=8, depth=1, embed_dim=16)
    assert isinstance(m, armvision.ARMClassifier) and m(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    assert not timm.list_models("*_pretrain")  # the pretrainer is not a timm model: create_pretrainer
    with pytest.raises(CheckpointError, match="no weights are known"):
        timm.create_model("arm_tiny", pretrained=True)  # no official tiny weights
    with pytest.raises(CheckpointError, match="no weights are known for the tiny pretrainer"):
        armvision.create_pretrainer("tiny", pretrained=True)
    assert "arm_huge" in timm.list_models("arm_*")


def test_checkpoint_filter_fn_timm_style():
    """checkpoint_filter_fn(state_dict, model) adapts a pretraining state dict by the classifier's own names."""
    from armtest import tiny_pretrainer

    pre, cls = tiny_pretrainer(depth=2), tiny_classifier()
    sd = armvision.models.checkpoint_filter_fn(pre.state_dict(), cls)
    assert set(cls.state_dict()) - set(sd) == {"cls_token", "norm_f.weight", "norm_f.bias", "head.weight", "head.bias"}
    assert set(sd) <= set(cls.state_dict())
    assert torch.equal(sd["layers.1.mixer.A_c_b_log"], pre.layers[1].mixer.A_log)
    assert sd["pos_embed"].shape == cls.pos_embed.shape
