
import numpy as np
import pytest
import torch

from armvision.errors import ConfigError
from armvision.nn import DropPath, PatchEmbed, SwiGLU, resample_grid, resample_with_middle_token, sincos_2d


def mae_table(dim, h, w):
    """MAE's 2D sin-cos table written out with numpy: first half encodes the column, second half the row."""
    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.concatenate([one(dim // 2, cols), one(dim // 2, rows)], axis=1)


@pytest.mark.parametrize("dim,h,w", [(32, 12, 12), (64, 3, 5), (768, 14, 14)])
def test_sincos_matches_mae_formula(dim, h, w):
    torch.testing.assert_close(sincos_2d(dim, (h, w)), torch.from_numpy(mae_table(dim, h, w)).float(), atol=1e-6, rtol=0)


def test_sincos_rejects_odd_dims():
    with pytest.raises(ValueError):
        sincos_2d(30, (2, 2))


def test_resampling_identity_and_middle_token():
    pos = torch.randn(1, 16, 8)
    assert resample_grid(pos, (4, 4), (4, 4)) is pos
    with_cls = resample_with_middle_token(pos, (4, 4), (4, 4), cls_pos=torch.zeros(1, 1, 8))
    assert with_cls.shape == (1, 17, 8) and torch.all(with_cls[0, 8] == 0)
    torch.testing.assert_close(torch.cat([with_cls[:, :8], with_cls[:, 9:]], 1), pos)
    bigger = resample_with_middle_token(with_cls, (4, 4), (6, 6))
    assert bigger.shape == (1, 37, 8) and torch.all(bigger[0, 18] == 0)
    manual = torch.nn.functional.interpolate(pos.reshape(1, 4, 4, 8).permute(0, 3, 1, 2), size=(6, 6), mode="bicubic", align_corners=False)
    manual = manual.permute(0, 2, 3, 1).reshape(1, 36, 8)
    torch.testing.assert_close(torch.cat([bigger[:, :18], bigger[:, 19:]], 1), manual)


def test_patch_embed_checks_input():
    pe = PatchEmbed(32, 8, 3, 16)
    assert pe(torch.randn(2, 3, 32, 32)).shape == (2, 16, 16)
    with pytest.raises(ConfigError, match="3-channel"):
        pe(torch.randn(2, 1, 32, 32))
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        pe(torch.randn(2, 3, 30, 32))
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        PatchEmbed(30, 8)


def test_swiglu_formula_and_hidden_size():
    m = SwiGLU(768)
    assert m.w1.out_features == 2048 and m.w3.in_features == 2048 and m.w1.bias is not None
    x = torch.randn(3, 768)
    expected = m.w3(torch.nn.functional.silu(m.w1(x)) * m.w2(x))
    torch.testing.assert_close(m(x), expected)


def test_drop_path_is_per_sample_and_unbiased():
    torch.manual_seed(0)
    dp = DropPath(0.5).train()
    x = torch.ones(4000, 3)
    y = dp(x)
    kept = (y[:, 0] != 0)
    assert torch.all((y[kept] == 2.0)) and abs(kept.float().mean().item() - 0.5) < 0.05
    assert torch.equal(DropPath(0.5).eval()(x), x)
