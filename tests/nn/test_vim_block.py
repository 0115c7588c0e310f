"""Vim's block (norm + Mamba mixer, no MLP) against a hand-written composition; the block factory."""
import pytest
import torch
import torch.nn.functional as F

from armvision.errors import ConfigError
from armvision.nn import MambaMixer, MambaMLPBlock, VimBlock, make_block


def vim_by_hand(block: VimBlock, x: torch.Tensor, **mixer_kwargs) -> torch.Tensor:
    """x + mixer(layer_norm(x)), written out with the functional LayerNorm."""
    norm = block.norm
    return x + block.mixer(F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps), **mixer_kwargs)


@pytest.mark.parametrize("directions", [1, 2])
def test_forward_is_norm_mixer_residual(directions):
    torch.manual_seed(0)
    block = VimBlock(16, MambaMixer(16, expand=2, directions=directions), norm_eps=1e-6).eval()
    with torch.no_grad():  # a non-trivial affine norm, so a block that skipped it would differ
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.normal_()
    x = torch.randn(2, 9, 16)
    torch.testing.assert_close(block(x), vim_by_hand(block, x), atol=1e-6, rtol=1e-6)
    assert not torch.allclose(block(x), x)  # the mixer branch is not a no-op


def test_has_no_mlp_and_vims_names():
    block = VimBlock(16, MambaMixer(16))
    top = {n.split(".")[0] for n, _ in block.named_parameters()}
    assert top == {"norm", "mixer"}  # Vim's names: layers.{i}.norm.*, layers.{i}.mixer.*
    mlp_block = MambaMLPBlock(16, MambaMixer(16))
    assert sum(p.numel() for p in block.parameters()) < sum(p.numel() for p in mlp_block.parameters())


def test_mixer_kwargs_reach_the_mixer():
    torch.manual_seed(1)
    block = VimBlock(8, MambaMixer(8, directions=4)).eval()
    x = torch.randn(1, 10, 8)  # 3x3 grid + a cls token at index 4
    torch.testing.assert_close(block(x, hw=(3, 3), cls_index=4), vim_by_hand(block, x, hw=(3, 3), cls_index=4))
    with pytest.raises(ConfigError, match="patch grid"):
        block(x)


def test_drop_path_drops_the_mixer_branch_per_sample():
    torch.manual_seed(2)
    block = VimBlock(8, MambaMixer(8), drop_path=0.5)
    x = torch.randn(64, 5, 8)
    with torch.no_grad():
        branch = vim_by_hand(block, x) - x
        y = block.train()(x)
        kept = torch.isclose(y, x + 2 * branch, atol=1e-5).flatten(1).all(1)
        dropped = torch.equal(y[~kept], x[~kept])
    assert dropped and 0 < kept.sum() < 64  # each sample: the whole branch (rescaled by 1/keep) or nothing
    torch.testing.assert_close(block.eval()(x), x + branch)


def test_make_block():
    assert isinstance(make_block("vim", 8, MambaMixer(8)), VimBlock)
    assert isinstance(make_block("mambamlp", 8, MambaMixer(8)), MambaMLPBlock)
    with pytest.raises(ConfigError, match="unknown block 'mlp'.*mambamlp, vim"):
        make_block("mlp", 8, MambaMixer(8))
