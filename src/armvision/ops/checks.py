"""Argument checks of the public entry points: one clear ValueError naming the argument, its shape and what it
must be."""
from __future__ import annotations

from typing import Optional

from torch import Tensor


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def scan(u, delta, A, B, C, D, z, delta_bias) -> None:
    p = "selective_scan"
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise ValueError(f"{p}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not (t.is_floating_point()):
            raise ValueError(f"{p}: {name} must be a real floating-point tensor, got dtype {t.dtype}")
    if u.dim() != 3:
        raise ValueError(f"{p}: u must have shape (batch, D, L), got {_shape(u)}")
    batch, dim, L = u.shape
    if L < 1:
        raise ValueError(f"{p}: u has an empty sequence (L=0), shape {_shape(u)}")
    for name in ("delta", "z"):
        t = named[name]
        if t is not None and t.shape != u.shape:
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but u has shape {_shape(u)}; they must match")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"{p}: A has shape {_shape(A)} but must be (D, N) with D={dim} from u {_shape(u)}")
    N = A.shape[1]
    for name in ("B", "C"):
        _bc(name, named[name], batch, dim, N, L)
    for name in ("D", "delta_bias"):
        t = named[name]
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but must be (D,) = ({dim},) from u {_shape(u)}")
    devices = {t.device for t in named.values() if t is not None}
    if len(devices) > 1:
        raise ValueError(f"{p}: all tensors must be on one device, got {sorted(str(d) for d in devices)}")


def _bc(name: str, t: Tensor, batch: int, dim: int, N: int, L: int) -> None:
    """B / C in one of mamba_ssm's forms: (D, N), (batch, N, L) or grouped (batch, G, N, L) with G dividing D."""
    p = "selective_scan"
    forms = f"(D, N) = ({dim}, {N}), (batch, N, L) = ({batch}, {N}, {L}) or (batch, G, N, L) with G dividing {dim}"
    if t.dim() == 2:
        if tuple(t.shape) != (dim, N):
            raise ValueError(f"{p}: {name} has shape {_shape(t)}; it must be {forms}")
        return
    if t.dim() not in (3, 4) or t.shape[0] != batch or tuple(t.shape[-2:]) != (N, L):
        raise ValueError(f"{p}: {name} has shape {_shape(t)}; it must be {forms}")
    if t.dim() == 4 and (t.shape[1] < 1 or dim % t.shape[1] != 0):
        raise ValueError(f"{p}: {name} has {t.shape[1]} groups (shape {_shape(t)}), which does not divide D={dim}")


def conv(x, weight, bias, activation) -> None:
    p = "causal_conv1d"
    if x.dim() != 3:
        raise ValueError(f"{p}: x must have shape (batch, D, L), got {_shape(x)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"{p}: weight has shape {_shape(weight)} but must be (D, width) with D={x.shape[1]} "
                         f"from x {_shape(x)}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"{p}: bias has shape {_shape(bias)} but must be (D,) = ({x.shape[1]},)")
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"{p}: activation must be None, 'silu' or 'swish', got {activation!r}")
    if x.device != weight.device or (bias is not None and bias.device != x.device):
        raise ValueError(f"{p}: x, weight and bias must be on one device")


def directions(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor, delta_bias: Tensor,
               index: Optional[Tensor], dt_weight: Optional[Tensor] = None) -> None:
    """The multi-direction scan's forms: u, delta (G, batch, L, Dg); B, C (G, batch, L, N); A (G * Dg, N);
    D, delta_bias (G * Dg,); z (batch, L, Dg); index (G, L) or None; with dt_weight (G, Dg, R), delta is
    (G, batch, L, R)."""
    p = "selective_scan_directions"
    if u.dim() != 4:
        raise ValueError(f"{p}: u must have shape (directions, batch, L, Dg), got {_shape(u)}")
    G, batch, L, Dg = u.shape
    if L < 1:
        raise ValueError(f"{p}: u has an empty sequence (L=0), shape {_shape(u)}")
    N = A.shape[-1]
    want = {"delta": (G, batch, L, Dg), "A": (G * Dg, N), "B": (G, batch, L, N), "C": (G, batch, L, N),
            "D": (G * Dg,), "z": (batch, L, Dg), "delta_bias": (G * Dg,)}
    named = {"delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    if dt_weight is not None:
        if dt_weight.dim() != 3 or dt_weight.shape[:2] != (G, Dg) or dt_weight.shape[2] < 1:
            raise ValueError(f"{p}: dt_weight has shape {_shape(dt_weight)} but must be ({G}, {Dg}, R) with R >= 1 "
                             f"for u {_shape(u)}")
        want["delta"] = (G, batch, L, dt_weight.shape[2])
        named["dt_weight"], want["dt_weight"] = dt_weight, tuple(dt_weight.shape)
    for name, t in named.items():
        if tuple(t.shape) != want[name]:
            raise ValueError(f"{p}: {name} has shape {_shape(t)} but must be {want[name]} for u {_shape(u)}")
    same_device(p, u, **named, index=index)
    _index(p, index, G, L)


def conv_directions(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor]) -> None:
    """x (batch, L, Dg); weight (G * Dg, width); bias (G * Dg,); index (G, L) or None."""
    p = "causal_conv1d_directions"
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] % max(x.shape[-1], 1):
        raise ValueError(f"{p}: x must be (batch, L, Dg) and weight (directions * Dg, width), got x {_shape(x)}, "
                         f"weight {_shape(weight)}")
    if tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{p}: bias has shape {_shape(bias)} but must be ({weight.shape[0]},)")
    if x.shape[1] < 1:
        raise ValueError(f"{p}: x has an empty sequence (L=0), shape {_shape(x)}")
    same_device(p, x, weight=weight, bias=bias, index=index)
    _index(p, index, weight.shape[0] // x.shape[-1], x.shape[1])


def _index(p: str, index: Optional[Tensor], G: int, L: int) -> None:
    if index is not None and tuple(index.shape) != (G, L):
        raise ValueError(f"{p}: index has shape {_shape(index)} but must be (directions, L) = ({G}, {L})")


def same_device(p: str, first: Tensor, **others: Optional[Tensor]) -> None:
    """Every tensor argument on the first one's device (a kernel handed a pointer from another device would crash)."""
    for name, t in others.items():
        if t is not None and t.device != first.device:
            raise ValueError(f"{p}: {name} is on {t.device} but the inputs are on {first.device}; "
                             "put them on one device")
