"""Small building blocks: patch embedding, SwiGLU, drop path, and the two residual blocks (ARM's MambaMLP, Vim's)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

import torch.fx
from torch import Tensor, nn

from ..errors import ConfigError
from ..fields import as_hw
from ..ops import silu_mul


def image_grid(x: Tensor, patch_size: Tuple[int, int], in_chans: int) -> Tuple[int, int]:
    """Validate an image batch (B, C, H, W) and return its patch grid (h, w).

    A leaf of torch.fx traces (`torch.fx.wrap` below): the checks read concrete shapes, so a traced graph keeps them
    as one call that runs on every input instead of failing on symbolic ones."""
    if x.ndim != 4:
        raise ConfigError(f"expected images of shape (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    _, c, h, w = x.shape
    if c != in_chans:
        raise ConfigError(f"the model takes {in_chans}-channel images, got {c} channels (shape {tuple(x.shape)})")
    ph, pw = patch_size
    if h % ph or w % pw:
        raise ConfigError(f"image size {h}x{w} is not a multiple of the patch size {ph}x{pw}")
    return h // ph, w // pw


def run_mixer(mixer: nn.Module, x: Tensor, **mixer_kwargs: Any) -> Tensor:
    """`mixer(x, **mixer_kwargs)`, a leaf of torch.fx traces (`torch.fx.wrap` below): the mixer chooses its scan
    backend by device and dtype and checks its grid at call time, which a traced graph must not freeze."""
    return mixer(x, **mixer_kwargs)


torch.fx.wrap("image_grid")
torch.fx.wrap("run_mixer")
torch.fx.wrap("silu_mul")  # a leaf too: it checks shapes and picks its backend at call time


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens. (B, C, H, W) -> (B, h*w, D), raster order."""

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.img_size, self.patch_size = as_hw(img_size), as_hw(patch_size)
        for s, p in zip(self.img_size, self.patch_size):
            if p <= 0 or s % p:
                raise ConfigError(f"image size {self.img_size} is not a multiple of the patch size {self.patch_size}")
        self.in_chans = in_chans
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def grid_for(self, x: Tensor) -> Tuple[int, int]:
        """Validate an image batch and return its patch grid (h, w)."""
        return image_grid(x, self.patch_size, self.in_chans)

    def forward(self, x: Tensor) -> Tensor:
        self.grid_for(x)
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class SwiGLU(nn.Module):
    """w3(silu(w1 x) * w2 x), biases on (ARM's MLP)."""

    def __init__(self, dim: int, hidden: Optional[int] = None):
        super().__init__()
        hidden = hidden or dim * 4 * 2 // 3
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        # w1 and w2 without their biases: the gate adds them in its one pass (armvision.ops.silu_mul)
        a, b = nn.functional.linear(x, self.w1.weight), nn.functional.linear(x, self.w2.weight)
        return self.w3(silu_mul(a, b, self.w1.bias, self.w2.bias))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample, rescale the kept ones."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MambaMLPBlock(nn.Module):
    """x + DropPath(Mixer(LN(x))); x + DropPath(SwiGLU(LN(x)))."""

    def __init__(self, dim: int, mixer: nn.Module, drop_path: float = 0.0, norm_eps: float = 1e-5):
        super().__init__()
        self.mixer = mixer
        self.mlp = SwiGLU(dim)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, **mixer_kwargs) -> Tensor:
        x = x + self.drop_path(run_mixer(self.mixer, self.norm1(x), **mixer_kwargs))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VimBlock(nn.Module):
    """Vision Mamba's block: x + DropPath(Mixer(LN(x))), no MLP.

    Vim writes it as "add, then norm, then mixer" with the residual carried between blocks (to fuse the add into the
    norm); stacked, that is this pre-norm residual form. LayerNorm as in MambaMLP (Vim defaults to RMSNorm), so the
    blocks differ only in the MLP.
    """

    def __init__(self, dim: int, mixer: nn.Module, drop_path: float = 0.0, norm_eps: float = 1e-5):
        super().__init__()
        self.mixer = mixer
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, **mixer_kwargs) -> Tensor:
        return x + self.drop_path(run_mixer(self.mixer, self.norm(x), **mixer_kwargs))


BLOCKS: Dict[str, Type[nn.Module]] = {"mambamlp": MambaMLPBlock, "vim": VimBlock}


def make_block(kind: str, dim: int, mixer: nn.Module, drop_path: float = 0.0, norm_eps: float = 1e-5) -> nn.Module:
    """The residual block named `kind` ("mambamlp" or "vim") around `mixer`."""
    if kind not in BLOCKS:
        raise ConfigError(f"unknown block {kind!r}; choose one of {', '.join(BLOCKS)}")
    return BLOCKS[kind](dim, mixer, drop_path=drop_path, norm_eps=norm_eps)
