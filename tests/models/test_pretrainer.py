import pytest
import torch

from armtest import tiny_pretrainer
from armvision.errors import ConfigError
from armvision.models.arm import default_feature_layers

ORDERINGS = ["row", "column", "row_reverse", "column_reverse", "random"]


def geometry(k):
    # 48 px / patch 8 = 6x6 patches: clusters of 1x1, 2x2, 3x3 (and 6x6 is a single cluster, rejected)
    return dict(img_size=48, patch_size=8, cluster_size=k)


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_clusters_are_contiguous_blocks_and_targets_are_next_clusters(ordering, k):
    torch.manual_seed(0)
    m = tiny_pretrainer(ordering=ordering, depth=2, **geometry(k))
    h, w = m.grid_size
    assert m.num_clusters == (h // k) * (w // k) and m.tokens_per_cluster == k * k
    ids = torch.arange(h * w).float().reshape(1, h * w, 1)  # raster patch ids as a token feature
    clusters = m.to_clusters(ids)[0, :, :, 0].long()  # (n, k*k)
    seen = set()
    for c, members in zip(m.cluster_order.tolist(), clusters):
        rows, cols = members // w, members % w
        r0, c0 = (c // (w // k)) * k, (c % (w // k)) * k
        expected = [(r0 + i) * w + c0 + j for i in range(k) for j in range(k)]  # raster inside the block
        assert members.tolist() == expected
        assert rows.max() - rows.min() == k - 1 and cols.max() - cols.min() == k - 1
        seen.update(members.tolist())
    assert seen == set(range(h * w))
    imgs = torch.randn(2, 3, 48, 48)
    target = m.targets(imgs)
    patches = m.patchify(imgs)
    for pos in (0, target.shape[1] - 1):
        raster = clusters.reshape(-1)[k * k + pos]  # targets start at the second cluster
        p = patches[:, raster]
        torch.testing.assert_close(target[:, pos], (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True) + 1e-6).sqrt())


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("k", [1, 2])
def test_cluster_level_causality(ordering, k):
    torch.manual_seed(1)
    m = tiny_pretrainer(ordering=ordering, depth=2, decoder_depth=2, **geometry(k)).eval()
    T, n = m.tokens_per_cluster, m.num_clusters
    imgs = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        base = m(imgs).pred
    p = m.patch_size
    for j in (1, n // 2, n - 1):  # perturb the j-th cluster (1-based) in prediction order
        img2 = imgs.clone()
        for raster in m.token_order[(j - 1) * T : j * T].tolist():
            r, c = divmod(raster, m.grid_size[1])
            img2[:, :, r * p : (r + 1) * p, c * p : (c + 1) * p] += torch.randn(3, p, p)
        with torch.no_grad():
            pred = m(img2).pred
        # predictions of clusters 2..j (positions before (j-1)*T) must not change; cluster j+1 must
        torch.testing.assert_close(pred[:, : (j - 1) * T], base[:, : (j - 1) * T], atol=0, rtol=0)
        if j < n:
            assert not torch.allclose(pred[:, (j - 1) * T : j * T], base[:, (j - 1) * T : j * T])


def test_orderings_and_random_seed():
    row = tiny_pretrainer(img_size=48, patch_size=8, cluster_size=2)
    assert row.cluster_order.tolist() == list(range(9))
    col = tiny_pretrainer(img_size=48, patch_size=8, cluster_size=2, ordering="column")
    assert col.cluster_order.tolist() == [0, 3, 6, 1, 4, 7, 2, 5, 8]
    rev = tiny_pretrainer(img_size=48, patch_size=8, cluster_size=2, ordering="row_reverse")
    assert rev.cluster_order.tolist() == list(range(8, -1, -1))
    r1 = tiny_pretrainer(img_size=48, patch_size=8, cluster_size=2, ordering="random", order_seed=1)
    r1b = tiny_pretrainer(img_size=48, patch_size=8, cluster_size=2, ordering="random", order_seed=1)
    r2 = tiny_pretrainer(img_size=48, patch_size=8, cluster_size=2, ordering="random", order_seed=2)
    assert r1.cluster_order.tolist() == r1b.cluster_order.tolist() != r2.cluster_order.tolist()
    assert sorted(r1.cluster_order.tolist()) == list(range(9))


def test_loss_targets_and_backward():
    torch.manual_seed(2)
    m = tiny_pretrainer(target="pixel")
    imgs = torch.randn(2, 3, 32, 32)
    out = m(imgs)
    assert out["loss"] is out.loss and out.pred.shape == out.target.shape == (2, 12, 192)
    torch.testing.assert_close(out.target, m.order(m.patchify(imgs))[:, 4:])
    torch.testing.assert_close(out.loss, ((out.pred - out.target) ** 2).mean())
    out.loss.backward()
    grads = [p.grad for n, p in m.named_parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert m.pos_embed.grad is None and m.dec_pos_embed.grad is None  # fixed tables


def test_patchify_roundtrip_and_layout():
    m = tiny_pretrainer()
    imgs = torch.randn(2, 3, 32, 32)
    x = m.patchify(imgs)
    torch.testing.assert_close(m.unpatchify(x), imgs)
    # the first patch vector is the top-left 8x8 block in (row, col, channel) order, as the reference's head expects
    torch.testing.assert_close(x[0, 0], imgs[0, :, :8, :8].permute(1, 2, 0).reshape(-1))


def test_default_feature_layers():
    assert default_feature_layers(12, 4) == [6, 8, 10, 12]
    assert default_feature_layers(24, 4) == [12, 16, 20, 24]
    assert default_feature_layers(4, 4) == [1, 2, 3, 4]
    assert default_feature_layers(12, 1) == [12]


def test_decoder_depth_and_feature_layers_configurable():
    m = tiny_pretrainer(decoder_depth=2, feature_layers=[2, 4], decoder_embed_dim=64, decoder_num_heads=2)
    assert len(m.dec_block) == 2 and m.enc2dec.in_features == 64 and m.enc2dec.out_features == 128
    assert m(torch.randn(1, 3, 32, 32)).loss.ndim == 0


def test_forward_features_layers():
    m = tiny_pretrainer()
    f2, f4 = m.encoder_outputs(torch.randn(2, 3, 32, 32), layers=[2, 4])
    assert f2.shape == f4.shape == (2, 16, 32) and not torch.allclose(f2, f4)


@pytest.mark.parametrize("kw,match", [
    (dict(img_size=40, patch_size=8, cluster_size=2), "do not tile"),
    (dict(img_size=36, patch_size=8), "multiple of the patch size"),
    (dict(img_size=16, patch_size=8, cluster_size=2), "at least 2 clusters"),
    (dict(ordering="spiral"), "ordering='spiral': choose one of row, column"),
    (dict(target="dvae"), "target='dvae': choose one of norm_pixel"),
    (dict(feature_layers=[1, 9, 2, 3]), "feature_layers"),
    (dict(decoder_embed_dim=48, decoder_num_heads=5), "not divisible"),
    (dict(bogus=1), "unknown key 'bogus'"),
    (dict(decoder_embed_dim=30, decoder_num_heads=1), "decoder_embed_dim=30: .*multiple of 4"),  # found by fuzzing
])
def test_bad_configurations(kw, match):
    with pytest.raises(ConfigError, match=match):
        tiny_pretrainer(**kw)


def test_bad_inputs():
    m = tiny_pretrainer()
    with pytest.raises(ConfigError, match="3-channel"):
        m(torch.randn(1, 1, 32, 32))
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        m(torch.randn(1, 3, 30, 30))
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\)"):
        m(torch.randn(3, 32, 32))


def test_wrong_image_size_is_one_clear_error():
    with pytest.raises(ConfigError, match="built for 32x32 images, got 48x48"):
        tiny_pretrainer()(torch.randn(1, 3, 48, 48))


def test_causal_cluster_mask_and_shift():
    from armvision.models.arm import causal_cluster_mask, causal_shift

    mask = causal_cluster_mask(3, 2)  # 3 input clusters of 2 tokens
    allowed = (mask == 0).int()
    assert allowed.tolist() == [[1, 1, 0, 0, 0, 0]] * 2 + [[1, 1, 1, 1, 0, 0]] * 2 + [[1] * 6] * 2
    m = tiny_pretrainer()
    assert torch.equal(m.mask, causal_cluster_mask(m.num_clusters - 1, m.tokens_per_cluster))
    clusters = torch.arange(4 * 3).reshape(1, 4, 3)  # (B, n, k*k)
    inputs, targets = causal_shift(clusters)
    assert inputs.tolist() == [list(range(9))] and targets.tolist() == [list(range(3, 12))]


def test_every_cluster_ordering_is_pinned():
    """Issue 25 (7): each ordering's prediction order on a 2 x 3 cluster grid (raster ids [[0, 1, 2], [3, 4, 5]]),
    written out: `column_reverse` is the column order backwards, not the column order."""
    from armvision.models.arm import cluster_order_for

    want = {"row": [0, 1, 2, 3, 4, 5], "column": [0, 3, 1, 4, 2, 5], "row_reverse": [5, 4, 3, 2, 1, 0],
            "column_reverse": [5, 2, 4, 1, 3, 0]}
    for ordering, order in want.items():
        assert cluster_order_for(ordering, (2, 3)).tolist() == order, ordering
    random = cluster_order_for("random", (2, 3), seed=3)
    assert sorted(random.tolist()) == list(range(6)) and random.tolist() == cluster_order_for("random", (2, 3), 3).tolist()
    assert random.tolist() != cluster_order_for("random", (2, 3), seed=4).tolist()
    m = tiny_pretrainer(ordering="column_reverse")  # the model uses it: its first cluster is the last raster one
    assert m.cluster_order.tolist() == [3, 1, 2, 0] and m.token_order[:4].tolist() == [10, 11, 14, 15]
