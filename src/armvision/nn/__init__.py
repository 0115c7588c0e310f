"""Neural-network layers: Mamba mixer (1, 2 or 4 directions), SwiGLU, blocks (MambaMLP, Vim), patch and position
embeddings, and the attention blocks of the pretraining decoders."""
from .attention import CrossAttention, DecoderBlock, Mlp, xavier_linear_
from .layers import BLOCKS, DropPath, MambaMLPBlock, PatchEmbed, SwiGLU, VimBlock, make_block
from .mamba import MambaMixer, direction_name, from_column_major, to_column_major
from .pos_embed import resample_grid, resample_with_middle_token, sincos_1d, sincos_2d

__all__ = [
    "CrossAttention", "DecoderBlock", "Mlp", "xavier_linear_", "DropPath", "MambaMLPBlock", "PatchEmbed", "SwiGLU",
    "VimBlock", "BLOCKS", "make_block", "MambaMixer", "direction_name", "to_column_major",
    "from_column_major", "resample_grid", "resample_with_middle_token", "sincos_1d", "sincos_2d",
]
