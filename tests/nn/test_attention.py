import pytest
import torch

from armvision.errors import ConfigError
from armvision.nn import CrossAttention, DecoderBlock, MambaMixer, direction_name


def test_decoder_block_keeps_the_reference_parameter_names():
    names = set(DecoderBlock(16, 2).state_dict())
    assert names == {f"{m}.{p}" for m in ("attn2.q", "attn2.kv", "attn2.proj", "norm2_1", "norm2_2", "norm2",
                                           "mlp.fc1", "mlp.fc2") for p in ("weight", "bias")}


def test_cross_attention_mask_hides_keys():
    torch.manual_seed(0)
    attn = CrossAttention(8, 2).eval()
    q, kv = torch.randn(1, 2, 8), torch.randn(1, 4, 8)
    mask = torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]] * 2)
    kv2 = kv.clone()
    kv2[:, 2:] += 1.0  # only hidden keys change
    torch.testing.assert_close(attn(q, kv, mask), attn(q, kv2, mask), atol=0, rtol=0)
    assert not torch.allclose(attn(q, kv, None), attn(q, kv2, None))
    with pytest.raises(ConfigError, match="not divisible"):
        CrossAttention(10, 3)


def test_direction_names_follow_the_reference():
    assert direction_name("conv1d.weight", "_c_b") == "conv1d_c_b.weight"
    assert direction_name("A_log", "_b") == "A_b_log" and direction_name("D", "_c") == "D_c"
    copies = MambaMixer(16, directions=4).direction_copies()
    assert copies["A_c_b_log"] == "A_log" and copies["x_proj_b.weight"] == "x_proj.weight"
    assert len(copies) == 3 * 7  # conv1d (w, b), x_proj (w), dt_proj (w, b), A_log, D in 3 extra directions
    assert MambaMixer(16).direction_copies() == {}
