import pytest
import torch

from armvision.errors import ConfigError
from armvision.nn import MambaMixer
from armvision.ops import causal_conv1d_ref, selective_scan_ref


def column_major_permutation(h, w, cls_index):
    """Sequence positions in column-major order, written out by hand; the cls token keeps its slot."""
    column = [r * w + c for c in range(w) for r in range(h)]
    if cls_index is None:
        return column
    shift = lambda i: i + (i >= cls_index)  # patch index -> sequence index with the cls token inserted
    seq = [shift(i) for i in column]
    return seq[:cls_index] + [cls_index] + seq[cls_index:]


def single_direction(four: MambaMixer, suffix: str) -> MambaMixer:
    one = MambaMixer(four.d_model, four.d_state, four.d_conv, directions=1)
    sd = {"in_proj.weight": four.in_proj.weight, "out_proj.weight": four.out_proj.weight}
    for name in ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias"):
        mod, p = name.split(".")
        sd[name] = four.state_dict()[f"{mod}{suffix}.{p}"]
    sd["A_log"] = four.state_dict()[f"A{suffix}_log"]
    sd["D"] = four.state_dict()[f"D{suffix}"]
    one.load_state_dict(sd)
    return one


def one_direction(m: MambaMixer, xz: torch.Tensor) -> torch.Tensor:
    """A one-direction mixer's scan written out with the oracles: (B, 2Di, L) -> gated (B, Di, L)."""
    x, z = xz.chunk(2, dim=1)
    x = causal_conv1d_ref(x, m.conv1d.weight.squeeze(1), m.conv1d.bias, "silu")
    dt, b, c = (x.transpose(1, 2) @ m.x_proj.weight.T).split([m.dt_rank, m.d_state, m.d_state], dim=-1)
    delta = (dt @ m.dt_proj.weight.T).transpose(1, 2)
    return selective_scan_ref(x, delta, -torch.exp(m.A_log.float()), b.transpose(1, 2), c.transpose(1, 2),
                              m.D.float(), z, m.dt_proj.bias.float(), delta_softplus=True)


@pytest.mark.parametrize("backend", ["cpu", "torch", "ref"])
@pytest.mark.parametrize("hw,cls_index", [((3, 3), 4), ((2, 4), 4), ((3, 2), None)])
def test_four_directions_equal_four_single_scans(hw, cls_index, backend):
    """On every backend (the CPU kernel's one call, the per-direction fallback of torch and ref), the mixer is four
    single-direction scans over flipped and column-major copies of the sequence, averaged."""
    torch.manual_seed(0)
    four = MambaMixer(16, directions=4, scan_backend=backend)
    with torch.no_grad():  # make the four directions differ
        for p in four.parameters():
            p.add_(0.05 * torch.randn_like(p))
    L = hw[0] * hw[1] + (cls_index is not None)
    x = torch.randn(2, L, 16)
    perm = torch.tensor(column_major_permutation(*hw, cls_index))
    inv = perm.argsort()
    xz = four.in_proj(x).transpose(1, 2)
    total = 0
    for suffix, order, back in [("", None, False), ("_b", None, True), ("_c", perm, False), ("_c_b", perm, True)]:
        one = single_direction(four, suffix)
        seq = xz if order is None else xz[..., order]
        y = one_direction(one, seq.flip(-1) if back else seq)
        y = y.flip(-1) if back else y
        total = total + (y if order is None else y[..., inv])
    expected = four.out_proj((total / 4).transpose(1, 2))
    got = four(x, hw=hw, cls_index=cls_index)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_recurrent_step_equals_full_pass():
    torch.manual_seed(1)
    m = MambaMixer(24, d_state=8, directions=1)
    x = torch.randn(3, 11, 24)
    full = m(x)
    state = m.allocate_state(3)
    steps = []
    for t in range(x.shape[1]):
        y, state = m.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_causal_mixer_never_looks_ahead():
    torch.manual_seed(2)
    m = MambaMixer(16, directions=1)
    x = torch.randn(1, 12, 16)
    base = m(x)
    for t in (0, 5, 11):
        x2 = x.clone()
        x2[:, t] += torch.randn(16)
        out = m(x2)
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=0, rtol=0)
        assert not torch.allclose(out[:, t:], base[:, t:])


def test_bidirectional_sees_both_ways_and_gradients_flow():
    torch.manual_seed(3)
    m = MambaMixer(16, directions=2)
    x = torch.randn(2, 9, 16, requires_grad=True)
    y = m(x)
    x2 = x.detach().clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(m(x2)[:, 0], y[:, 0])
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_mixer_init_matches_mamba():
    m = MambaMixer(32, d_state=16, directions=4)
    assert m.dt_rank == 2 and m.d_inner == 32
    for s in ("", "_b", "_c", "_c_b"):
        torch.testing.assert_close(getattr(m, f"A{s}_log").exp()[0], torch.arange(1, 17, dtype=torch.float32))
        assert torch.all(getattr(m, f"D{s}") == 1)
        dt = torch.nn.functional.softplus(getattr(m, f"dt_proj{s}").bias)
        assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert m.in_proj.bias is None and m.out_proj.bias is None


def test_bad_configuration_errors():
    with pytest.raises(ConfigError, match="directions"):
        MambaMixer(8, directions=3)
    with pytest.raises(ConfigError, match="scan_backend must be one of auto, ref, torch, cpu, triton, cuda, got 'gpu'"):
        MambaMixer(8, scan_backend="gpu")
    m4 = MambaMixer(8, directions=4)
    with pytest.raises(ConfigError, match="grid"):
        m4(torch.randn(1, 5, 8))
    with pytest.raises(ConfigError, match="does not match"):
        m4(torch.randn(1, 5, 8), hw=(3, 3), cls_index=None)
    with pytest.raises(ConfigError, match="causal"):
        m4.step(torch.randn(1, 8), m4.allocate_state(1))


def test_inference_keeps_joined_weights_until_a_parameter_changes():
    """Under no_grad the directions' joined weights are reused between calls; every kind of change to a parameter
    (in place, replaced storage, load_state_dict, a cast) gives the output of a fresh join, as grad mode computes."""
    torch.manual_seed(0)
    m = MambaMixer(16, directions=4, scan_backend="torch")
    x, kw = torch.randn(2, 7, 16), dict(hw=(2, 3), cls_index=6)

    def both():
        xx = x.to(m.D.dtype)
        with torch.no_grad():
            cached = m(xx, **kw)
        fresh = m(xx, **kw).detach()  # grad mode: joined anew
        torch.testing.assert_close(cached, fresh, rtol=0, atol=0)
        return cached

    first = both()
    joined = m.__dict__["_joined"][2]
    with torch.no_grad():
        assert all(a is b for a, b in zip(m._joined_weights(torch.float32), joined))  # reused as they are
        m.A_c_log.add_(0.5)
    assert not torch.equal(both(), first)
    with torch.no_grad():
        m.x_proj_b.weight.mul_(2.0)
    after_inplace = both()
    m.D_c.data = torch.randn(16)
    assert not torch.equal(both(), after_inplace)
    sd = {k: v + 0.01 for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    both()
    m.double()
    assert "_joined" not in m.__dict__ and both().dtype == torch.float64


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap loops over our ops (no batching rule)
def test_inference_over_vmapped_parameters():
    """torch.func.vmap over stacked parameters (an ensemble) under no_grad: the parameters have no storage to key
    a cache on; the mixer joins them afresh and gives what each member gives alone."""
    torch.manual_seed(0)
    m = MambaMixer(16, directions=4, scan_backend="torch")
    x, kw = torch.randn(2, 7, 16), dict(hw=(2, 3), cls_index=6)
    members = [{k: v.detach() * s for k, v in m.named_parameters()} for s in (1.0, 1.1)]
    stacked = {k: torch.stack([p[k] for p in members]) for k in members[0]}
    with torch.no_grad():
        got = torch.func.vmap(lambda p: torch.func.functional_call(m, p, (x,), kw))(stacked)
        for i, p in enumerate(members):
            torch.testing.assert_close(got[i], torch.func.functional_call(m, p, (x,), kw))
