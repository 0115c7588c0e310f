import pytest
import torch

import armvision
from armtest import tiny_classifier
from armvision.errors import ConfigError
from armvision.models.mae import random_masking


def tiny_mae(**kw):
    cfg = dict(embed_dim=32, depth=2, decoder_embed_dim=32, decoder_depth=1, img_size=32, patch_size=8)
    cfg.update(kw)
    return armvision.create_mae("tiny", **cfg)


@pytest.mark.parametrize("ratio,n", [(0.75, 16), (0.5, 36), (0.75, 144), (0.9, 196)])
def test_masking_keeps_exactly_the_requested_ratio(ratio, n):
    g = torch.Generator().manual_seed(0)
    ids_keep, mask = random_masking(8, n, ratio, generator=g)
    n_keep = round(n * (1 - ratio))
    assert ids_keep.shape == (8, n_keep) and torch.all(mask.sum(1) == n - n_keep)
    assert torch.all(ids_keep[:, 1:] > ids_keep[:, :-1])  # raster order kept for the Mamba encoder
    assert torch.all(mask.gather(1, ids_keep) == 0)
    assert len({tuple(r) for r in ids_keep.tolist()}) > 1  # per-sample masks


def test_loss_is_on_masked_patches_only():
    torch.manual_seed(0)
    m = tiny_mae()
    imgs = torch.randn(2, 3, 32, 32)
    out = m(imgs, generator=torch.Generator().manual_seed(1))
    per_patch = ((out.pred - out.target) ** 2).mean(-1)
    torch.testing.assert_close(out.loss, (per_patch * out.mask).sum() / out.mask.sum())
    # changing the prediction target of a visible patch leaves the loss unchanged
    visible = (out.mask[0] == 0).nonzero()[0].item()
    p = m.patch_size
    r, c = divmod(visible, m.grid_size[1])
    imgs2 = imgs.clone()
    imgs2[0, :, r * p : (r + 1) * p, c * p : (c + 1) * p] = torch.randn(3, p, p)
    m.eval()
    a = m(imgs, generator=torch.Generator().manual_seed(1))
    b = m(imgs2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.mask, b.mask)
    assert not torch.allclose(a.loss, b.loss)  # the encoder sees the visible patch: predictions change ...
    per_a = ((a.pred - a.target) ** 2).mean(-1)
    per_b = ((b.pred - b.target) ** 2).mean(-1)
    assert not torch.allclose(per_a[0, visible], per_b[0, visible])  # ... the visible patch's own error too,
    torch.testing.assert_close(b.loss, (per_b * b.mask).sum() / b.mask.sum())  # but it is never in the loss


def test_mae_checkpoint_finetunes_like_arm():
    mae = tiny_mae()
    cls = tiny_classifier()
    rep = armvision.load_checkpoint(cls, {"model": mae.state_dict()})
    assert rep.source == "mae" and set(rep.missing) == {"cls_token", "norm_f.weight", "norm_f.bias", "head.weight", "head.bias"}
    assert torch.equal(cls.layers[0].mixer.conv1d_c.weight, mae.layers[0].mixer.conv1d.weight)


def test_bad_mask_ratio():
    with pytest.raises(ConfigError, match="mask_ratio"):
        tiny_mae(mask_ratio=1.0)(torch.randn(1, 3, 32, 32))
