"""The contrastive (SimCLR-style) baseline: NT-Xent against a plain loop, the model's views and encoder, its
checkpoints into the classifier, and bad configs."""
import math

import pytest
import torch
from PIL import Image

from armtest import fit_steps, tiny_classifier
from armvision.data import TwoViews, contrastive_transform
from armvision.errors import ConfigError
from armvision.models import ContrastivePretrainer, create_contrastive, load_checkpoint, load_model, nt_xent
from armvision.models import infer_config


def tiny_contrastive(**kw):
    cfg = dict(embed_dim=32, depth=2, img_size=32, patch_size=8, proj_dim=16)
    cfg.update(kw)
    return create_contrastive("tiny", **cfg)


def loop_nt_xent(z1, z2, temperature):
    """NT-Xent written out one anchor at a time, as in the SimCLR paper (Algorithm 1)."""
    z = [v / v.norm() for v in list(z1) + list(z2)]
    n, b = len(z), len(z1)
    total = 0.0
    for i in range(n):
        j = i + b if i < b else i - b  # the other view of the same image
        sims = [torch.dot(z[i], z[k]) / temperature for k in range(n)]
        denominator = sum(torch.exp(sims[k]) for k in range(n) if k != i)
        total = total - torch.log(torch.exp(sims[j]) / denominator)
    return total / n


@pytest.mark.parametrize("b,d,t", [(2, 3, 0.5), (4, 8, 0.1), (5, 16, 1.0)])
def test_nt_xent_matches_the_loop_value_and_gradients(b, d, t):
    g = torch.Generator().manual_seed(b * d)
    z1 = (torch.randn(b, d, generator=g, dtype=torch.float64) * 3).requires_grad_()
    z2 = torch.randn(b, d, generator=g, dtype=torch.float64).requires_grad_()
    ours = nt_xent(z1, z2, t)
    ref = loop_nt_xent(z1.double(), z2.double(), t)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-6)
    g_ours = torch.autograd.grad(ours, (z1, z2))
    g_ref = torch.autograd.grad(ref, (z1, z2))
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a.double(), r, rtol=1e-4, atol=1e-6)


def test_nt_xent_is_log_2b_minus_1_for_random_features():
    g = torch.Generator().manual_seed(0)
    b = 8
    z1, z2 = torch.randn(b, 8192, generator=g), torch.randn(b, 8192, generator=g)  # near-orthogonal: all sims ~ 0
    assert abs(nt_xent(z1, z2, 0.5).item() - math.log(2 * b - 1)) < 0.05


def test_nt_xent_is_near_zero_for_aligned_separated_views_and_large_when_mispaired():
    b = 6
    z = torch.eye(b, 10) * torch.arange(1.0, b + 1)[:, None]  # orthogonal directions, any length
    assert nt_xent(z, z.clone(), 0.05).item() < 1e-6  # each view's partner is 20 logits above every negative
    assert nt_xent(z, z.roll(1, 0), 0.05).item() > 5.0  # partners swapped between images: the loss sees it
    torch.testing.assert_close(nt_xent(z, z.roll(1, 0), 0.05), nt_xent(z.roll(1, 0), z, 0.05))  # symmetric


def test_bad_temperature_is_one_clear_error():
    with pytest.raises(ConfigError, match="temperature"):
        nt_xent(torch.randn(2, 4), torch.randn(2, 4), 0.0)
    with pytest.raises(ConfigError, match="temperature=0"):
        tiny_contrastive(temperature=0.0)
    with pytest.raises(ConfigError, match="proj_layers"):
        tiny_contrastive(proj_layers=0)


def test_model_loss_is_nt_xent_of_the_two_views_projections():
    torch.manual_seed(0)
    m = tiny_contrastive(temperature=0.3).eval()  # eval: BatchNorm uses running stats, views can go separately
    views = torch.randn(3, 2, 3, 32, 32)
    out = m(views)
    z1, z2 = m.forward_projection(views[:, 0]), m.forward_projection(views[:, 1])
    torch.testing.assert_close(out.z1, z1)
    torch.testing.assert_close(out.z2, z2)
    torch.testing.assert_close(out.loss, loop_nt_xent(z1, z2, 0.3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m((views[:, 0], views[:, 1])).loss, out.loss)  # a pair of batches works too


def test_training_step_reaches_the_backbone_but_not_the_fixed_table():
    torch.manual_seed(0)
    m = tiny_contrastive()
    m(torch.randn(4, 2, 3, 32, 32)).loss.backward()
    assert m.patch_embed.proj.weight.grad.abs().sum() > 0
    assert m.layers[0].mixer.in_proj.weight.grad.abs().sum() > 0
    assert not m.pos_embed.requires_grad and m.pos_embed.grad is None


def test_encoder_is_the_causal_single_direction_one():
    torch.manual_seed(0)
    m = tiny_contrastive().eval()
    assert all(layer.mixer.directions == 1 for layer in m.layers)
    x = torch.randn(2, 3, 32, 32)
    x2 = x.clone()
    x2[..., 24:, 24:] = torch.randn(2, 3, 8, 8)  # the last patch in raster order
    a, b = m.forward_features(x), m.forward_features(x2)
    assert a.shape == (2, 16, 32)
    torch.testing.assert_close(a[:, :15], b[:, :15])  # earlier tokens never see a later patch
    assert not torch.allclose(a[:, 15], b[:, 15])
    torch.testing.assert_close(m.forward_encoder(x), a.mean(1))  # the pooled representation: mean over tokens


def test_single_views_are_refused():
    m = tiny_contrastive()
    with pytest.raises(ConfigError, match="two views"):
        m(torch.randn(2, 3, 32, 32))
    with pytest.raises(ConfigError, match="two views"):
        m([torch.randn(2, 3, 32, 32)] * 3)


def test_checkpoint_finetunes_like_arm_with_a_report_naming_what_changed():
    m = tiny_contrastive()
    cls = tiny_classifier()
    rep = load_checkpoint(cls, {"model": m.state_dict()})
    assert rep.source == "contrastive"
    text = str(rep)
    assert "projection head (projector.*" in text and "into 4 directions" in text
    assert set(rep.missing) == {"cls_token", "norm_f.weight", "norm_f.bias", "head.weight", "head.bias"}
    assert not rep.unexpected
    assert torch.equal(cls.layers[0].mixer.conv1d_c.weight, m.layers[0].mixer.conv1d.weight)
    assert torch.equal(cls.patch_embed.proj.weight, m.patch_embed.proj.weight)


def test_state_dict_rebuilds_the_same_model():
    m = tiny_contrastive(proj_layers=2, proj_hidden_dim=24)
    cfg = infer_config(m.state_dict())
    assert cfg["kind"] == "contrastive" and (cfg["proj_layers"], cfg["proj_hidden_dim"], cfg["proj_dim"]) == (2, 24, 16)
    m2, rep = load_model({"model": m.state_dict()})  # no model_config: inferred from the shapes
    assert isinstance(m2, ContrastivePretrainer) and not rep.missing and not rep.unexpected
    for k, v in m.state_dict().items():
        assert torch.equal(m2.state_dict()[k], v), k


def test_two_views_are_independent_draws_of_the_simclr_transform():
    img = Image.fromarray((torch.rand(32, 32, 3) * 255).byte().numpy())
    torch.manual_seed(0)
    v = TwoViews(contrastive_transform(32, 0.2))(img)
    assert v.shape == (2, 3, 32, 32) and not torch.equal(v[0], v[1])
    torch.manual_seed(0)
    assert torch.equal(TwoViews(contrastive_transform(32, 0.2))(img), v)  # seeded: reproducible
    blur = [t for t in contrastive_transform(32).transforms if "GaussianBlur" in repr(t)]
    assert blur and "kernel_size=(3, 3)" in repr(blur[0])  # ~10 % of a 32 px image, odd


def test_a_few_steps_learn_to_tell_a_fixed_batch_apart():
    torch.manual_seed(0)
    m = tiny_contrastive(temperature=0.5)
    x = torch.randn(16, 3, 32, 32)
    views = torch.stack([x, x + torch.randn_like(x)], 1)  # two noisy views of each image
    losses = fit_steps(m, views, steps=25, lr=3e-3)
    aligned = math.log(1 + 30 * math.exp(-2.0))  # positives at cosine 1, negatives at 0, temperature 0.5
    assert losses[0] > aligned + 1.0 and losses[-1] < aligned + 0.05, losses
