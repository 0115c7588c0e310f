"""Attention blocks of the pretraining decoders (ARM's cross-attention decoder, MAE's self-attention decoder).

Parameter names follow the reference ARM checkpoints (`attn2.{q,kv,proj}`, `norm2_1`, `norm2_2`, `norm2`,
`mlp.{fc1,fc2}`), so reference decoder weights load as they are.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError


class CrossAttention(nn.Module):
    """Multi-head attention of queries over a separate key/value sequence, with an optional additive mask."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"decoder width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: Tensor, kv: Tensor, mask: Optional[Tensor]) -> Tensor:
        """q (B, Nq, C), kv (B, Nk, C), mask (Nq, Nk) additive (0 or -inf) or None -> (B, Nq, C)."""
        b, nq, c = q.shape
        h = self.num_heads
        q = self.q(q).reshape(b, nq, h, c // h).transpose(1, 2)  # (B, H, Nq, hd)
        k, v = self.kv(kv).reshape(b, kv.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)  # 2 x (B, H, Nk, hd)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype))
        return self.proj(x.transpose(1, 2).reshape(b, nq, c))  # (B, Nq, C)


class Mlp(nn.Module):
    """fc2(gelu(fc1 x)): the decoder's MLP."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DecoderBlock(nn.Module):
    """q = q + CrossAttn(LN(q), LN(kv), mask); q = q + MLP(LN(q)). With kv = q it is a self-attention block (MAE)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.attn2 = CrossAttention(dim, num_heads)
        self.norm2_1 = nn.LayerNorm(dim)
        self.norm2_2 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, q: Tensor, kv: Tensor, mask: Optional[Tensor]) -> Tensor:
        """q (B, Nq, C) queries, kv (B, Nk, C) keys/values -> (B, Nq, C)."""
        q = q + self.attn2(self.norm2_1(q), self.norm2_2(kv), mask)
        return q + self.mlp(self.norm2(q))


def xavier_linear_(*modules: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear inside `modules`, in order (decoder init)."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
