"""Mamba-1 mixer as used by ARM: expand 1, one causal direction (pretraining) or four scan directions (finetuning).

Parameter names follow the reference checkpoints: direction suffixes "", "_b", "_c", "_c_b" on conv1d / x_proj /
dt_proj, and `A_log`, `A_b_log`, `A_c_log`, `A_c_b_log`, `D`, `D_b`, `D_c`, `D_c_b`.

The mixer resolves its scan backend once per call (`scan_backend`: "auto" or a name of armvision.ops.BACKENDS) and
passes the answer to the two ops it calls: the conv of every direction (`causal_conv1d_directions`) and the scan of
every direction (`selective_scan_directions`), each in one call where the backend has a multi-direction kernel.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..ops import BACKENDS, causal_conv1d_directions, resolve_backend, selective_scan_directions

DIRECTION_SUFFIXES = ("", "_b", "_c", "_c_b")  # row fwd, row bwd, column fwd, column bwd


def _a_name(suffix: str) -> str:
    return f"A{suffix}_log"


def direction_name(name: str, suffix: str) -> str:
    """Name of a first-direction tensor in direction `suffix`: conv1d.weight -> conv1d_c.weight, A_log -> A_c_log,
    D -> D_c (the reference checkpoints' convention)."""
    if name == "A_log":
        return _a_name(suffix)
    head, dot, tail = name.partition(".")
    return f"{head}{suffix}{dot}{tail}"


def to_column_major(x: Tensor, hw: Tuple[int, int], cls_index: Optional[int]) -> Tensor:
    """(B, C, L) raster sequence -> column-major sequence; a cls token at `cls_index` stays at that index."""
    h, w = hw
    if cls_index is not None:
        cls, x = x[..., cls_index : cls_index + 1], torch.cat([x[..., :cls_index], x[..., cls_index + 1 :]], dim=-1)
    b, c, _ = x.shape
    x = x.reshape(b, c, h, w).transpose(-1, -2).reshape(b, c, h * w)
    if cls_index is not None:
        x = torch.cat([x[..., :cls_index], cls, x[..., cls_index:]], dim=-1)
    return x


def from_column_major(x: Tensor, hw: Tuple[int, int], cls_index: Optional[int]) -> Tensor:
    """Inverse of `to_column_major`."""
    return to_column_major(x, (hw[1], hw[0]), cls_index)


class MambaMixer(nn.Module):
    """Selective SSM mixer. (B, L, D) -> (B, L, D).

    directions=1: causal scan in sequence order (supports `step` for recurrent inference).
    directions=2: forward + backward over the sequence, averaged.
    directions=4: row-major forward/backward and column-major forward/backward over a (h, w) grid whose optional cls
    token stays at `cls_index`; the four outputs are summed and divided by 4 before out_proj.
    scan_backend: the selective-scan backend ("auto": ARMVISION_SCAN_BACKEND when set, else the fastest one here;
    see armvision.ops.resolve); a plain attribute, so it can be changed on a built model.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 1,
        dt_rank="auto",
        directions: int = 1,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        scan_backend: str = "auto",
    ):
        super().__init__()
        if directions not in (1, 2, 4):
            raise ConfigError(f"MambaMixer: directions must be 1, 2 or 4, got {directions}")
        if scan_backend not in BACKENDS:
            raise ConfigError(f"MambaMixer: scan_backend must be one of {', '.join(BACKENDS)}, got {scan_backend!r}")
        self.scan_backend = scan_backend
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.directions = directions
        self.suffixes = DIRECTION_SUFFIXES[:directions]
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        for s in self.suffixes:
            self.add_module(f"conv1d{s}", nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1))
            self.add_module(f"x_proj{s}", nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False))
            self.add_module(f"dt_proj{s}", nn.Linear(self.dt_rank, self.d_inner, bias=True))
            self.register_parameter(_a_name(s), nn.Parameter(torch.empty(self.d_inner, d_state)))
            self.register_parameter(f"D{s}", nn.Parameter(torch.empty(self.d_inner)))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Mamba's initialisation of dt_proj, A_log (log 1..N) and D (ones)."""
        dt_min, dt_max, floor = self._dt_range
        std = self.dt_rank**-0.5
        for s in self.suffixes:
            dt_proj = getattr(self, f"dt_proj{s}")
            nn.init.uniform_(dt_proj.weight, -std, std)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=floor)
            dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            dt_proj.bias._no_reinit = True
            getattr(self, _a_name(s)).copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
            getattr(self, f"D{s}").fill_(1.0)

    def _ssm_inputs(self, x: Tensor, s: str):
        """x: (B, Di, L) after conv -> delta (B, Di, L), B (B, N, L), C (B, N, L)."""
        x_dbl = F.linear(x.transpose(1, 2), getattr(self, f"x_proj{s}").weight)  # (B, L, R + 2N)
        dt, b, c = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, getattr(self, f"dt_proj{s}").weight).transpose(1, 2)  # (B, Di, L)
        return delta, b.transpose(1, 2).contiguous(), c.transpose(1, 2).contiguous()

    def scan_orders(self, L: int, hw: Optional[Tuple[int, int]], cls_index: Optional[int], device) -> Tensor:
        """(directions, L) int64: the sequence position that each direction visits at step t. Row-major forward
        and backward; column-major forward and backward over the (h, w) grid, a cls token keeping its index.
        Cached per shape in eager mode; under torch.compile / torch.export built in the graph (sizes may be
        symbolic there, and a traced tensor must not outlive its trace)."""
        if torch.compiler.is_compiling():
            return self._make_orders(L, hw, cls_index, device)
        key = (L, hw, cls_index, str(device))
        cache = self.__dict__.setdefault("_orders", {})
        if key not in cache:
            cache[key] = self._make_orders(L, hw, cls_index, device)
        return cache[key]

    def _make_orders(self, L: int, hw: Optional[Tuple[int, int]], cls_index: Optional[int], device) -> Tensor:
        pos = torch.arange(L, device=device)
        rows = [pos, pos.flip(0)]
        if self.directions == 4:
            col = to_column_major(pos.view(1, 1, L), hw, cls_index).view(L)
            rows += [col, col.flip(0)]
        return torch.stack(rows[: self.directions])

    def _check_grid(self, L: int, hw, cls_index) -> None:
        if self.directions == 4:
            if hw is None:
                raise ConfigError("a 4-direction mixer needs the patch grid: pass hw=(h, w)")
            if hw[0] * hw[1] + (cls_index is not None) != L:
                raise ConfigError(f"grid {hw} (+cls: {cls_index is not None}) does not match sequence length {L}")

    def _make_joined(self, dtype: torch.dtype) -> Tuple[Tensor, ...]:
        """The directions' weights joined as the ops take them: conv weight (G*Di, K) and bias, x_proj transposed
        (G, Di, R + 2N) in `dtype`, dt_proj (G, Di, R), A = -exp(A_log) (G*Di, N), D and dt bias (G*Di,) float32."""
        sfx = self.suffixes
        convs = [getattr(self, f"conv1d{s}") for s in sfx]
        w_x = torch.stack([getattr(self, f"x_proj{s}").weight for s in sfx])  # (G, R + 2N, Di)
        return (torch.cat([c.weight.squeeze(1) for c in convs]), torch.cat([c.bias for c in convs]),
                w_x.transpose(1, 2).to(dtype).contiguous(),
                torch.stack([getattr(self, f"dt_proj{s}").weight for s in sfx]),
                -torch.exp(torch.cat([getattr(self, _a_name(s)) for s in sfx]).float()),
                torch.cat([getattr(self, f"D{s}") for s in sfx]).float(),
                torch.cat([getattr(self, f"dt_proj{s}").bias for s in sfx]).float())

    def _joined_weights(self, dtype: torch.dtype) -> Tuple[Tensor, ...]:
        """`_make_joined`, kept between calls where no graph needs them (eager, gradients off: inference) until a
        parameter changes (in place: its version counter; replaced: its storage, which the cache holds so that no new
        tensor can take its address) or the module is moved or cast. Saves 7 small joins and copies per layer and
        call."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return self._make_joined(dtype)  # a graph (autograd's, a compiler's, an export's) derives them itself
        params = tuple(p for n, p in self.named_parameters() if not n.startswith(("in_proj.", "out_proj.")))
        try:
            key = (dtype, tuple((p.data_ptr(), p._version) for p in params))
        except RuntimeError:  # tensors without storage (torch.func's vmap over parameters): nothing to key on
            return self._make_joined(dtype)
        hit = self.__dict__.get("_joined")
        if hit is None or hit[0] != key:
            hit = (key, tuple(p.detach() for p in params), self._make_joined(dtype))
            self.__dict__["_joined"] = hit
        return hit[2]

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_joined", None)  # .to(), .half(), ...: the joined weights are rebuilt from the new ones
        return super()._apply(fn, recurse)

    def _mix(self, xz: Tensor, hw, cls_index, backend: str) -> Tensor:
        """All directions at once, channels-last: each direction's conv runs in its scan order (`order`: a gather
        of x), x_proj of all directions is one batched matmul, dt_proj goes to the scan with its input (made inside
        the "cpu" kernel, a batched matmul elsewhere), and the scan reads the shared gate z and writes the summed
        output at each step's raster position. (B, L, 2Di) -> (B, L, Di)."""
        Bsz, L, _ = xz.shape
        G, Di, N, R = self.directions, self.d_inner, self.d_state, self.dt_rank
        x, z = xz.split(Di, dim=-1)  # (B, L, Di) views
        order = self.scan_orders(L, hw, cls_index, xz.device) if G > 1 else None
        conv_w, conv_b, w_x, w_dt, A, D, bias = self._joined_weights(x.dtype)
        u = causal_conv1d_directions(x, conv_w, conv_b, order, backend=backend)  # (G, B, L, Di)
        u2 = u.reshape(G, Bsz * L, Di)
        # x_proj as one product (u is read once; its weight transposed to (Di, R + 2N) so the GEMM streams it); the
        # scan reads dt_proj's input (the first R columns), B and C as strided views
        x_dbl = torch.matmul(u2, w_x)  # (G, B*L, R + 2N)
        dt_in = x_dbl[..., :R].view(G, Bsz, L, R)
        b = x_dbl[..., R:R + N].view(G, Bsz, L, N)
        c = x_dbl[..., R + N:].view(G, Bsz, L, N)
        return self.scan(u, dt_in, A, b, c, D, z, bias, order, backend, w_dt)  # (B, L, Di): mean over directions

    def scan(self, u: Tensor, dt_in: Tensor, A: Tensor, b: Tensor, c: Tensor, D: Tensor, z: Tensor, bias: Tensor,
             order: Optional[Tensor], backend: str, dt_weight: Tensor) -> Tensor:
        """The selective scan of every direction (armvision.ops.selective_scan_directions): u (G, B, L, Di), dt_in
        (G, B, L, R) (delta = dt_in dt_weight^T, dt_weight (G, Di, R)) and b, c (G, B, L, N) in each direction's
        order, z (B, L, Di) raster order -> silu(z) * mean_g (y_g + D u_g) as (B, L, Di) (the 1 / G inside the
        scan's own output pass). A method of its own so that a benchmark can time the mixer without the
        recurrence."""
        return selective_scan_directions(u, dt_in, A, b, c, D, z, bias, order, scale=1.0 / self.directions,
                                         backend=backend, dt_weight=dt_weight)

    def forward(self, x: Tensor, hw: Optional[Tuple[int, int]] = None, cls_index: Optional[int] = None) -> Tensor:
        self._check_grid(x.shape[1], hw, cls_index)
        xz = self.in_proj(x)  # (B, L, 2*Di)
        backend = resolve_backend("selective_scan", self.scan_backend, xz.is_cuda, xz.dtype, self.d_state)
        return self.out_proj(self._mix(xz, hw, cls_index, backend))  # (B, L, D)

    def direction_copies(self) -> Dict[str, str]:
        """Local name of each tensor of the extra directions -> its first-direction counterpart
        (e.g. "conv1d_c_b.weight" -> "conv1d.weight"): what a 1-direction checkpoint copies into this mixer."""
        own = dict(self.named_parameters())
        return {direction_name(n, s): n for n in own for s in self.suffixes[1:] if direction_name(n, s) in own}

    @staticmethod
    def config_from_state_dict(sd: Mapping[str, Tensor], prefix: str, d_model: int) -> Dict[str, int]:
        """d_state, d_conv and expand of the mixer whose tensors are `prefix`* in a state dict ({} if absent)."""
        if f"{prefix}A_log" not in sd:
            return {}
        return dict(d_state=sd[f"{prefix}A_log"].shape[1], d_conv=sd[f"{prefix}conv1d.weight"].shape[-1],
                    expand=sd[f"{prefix}in_proj.weight"].shape[0] // (2 * d_model))

    # ---- recurrent inference (1 direction) -------------------------------------------------------------------
    def allocate_state(self, batch: int, device=None, dtype=torch.float32) -> Tuple[Tensor, Tensor]:
        """Zero (conv_state (B, Di, d_conv), ssm_state (B, Di, N))."""
        device = device or self.in_proj.weight.device
        return (torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype),
                torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=torch.float32))

    def step(self, x: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """One token (B, D) -> output (B, D) and the new state; equal to the full causal pass, token by token."""
        if self.directions != 1:
            raise ConfigError("recurrent step needs a causal (directions=1) mixer")
        conv_state, ssm_state = state
        x, z = self.in_proj(x).chunk(2, dim=-1)  # (B, Di) each
        conv_state = torch.cat([conv_state[..., 1:], x.unsqueeze(-1).to(conv_state.dtype)], dim=-1)
        x = F.silu((conv_state * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)  # (B, Di)
        delta, b, c = self._ssm_inputs(x.unsqueeze(-1), "")
        delta = F.softplus(delta[..., 0].float() + self.dt_proj.bias.float())  # (B, Di)
        a = -torch.exp(self.A_log.float())
        ssm_state = torch.exp(delta[..., None] * a) * ssm_state + (delta * x.float())[..., None] * b[:, None, :, 0].float()
        y = torch.einsum("bdn,bn->bd", ssm_state, c[..., 0].float()) + self.D.float() * x.float()
        y = (y * F.silu(z.float())).to(x.dtype)
        return self.out_proj(y), (conv_state, ssm_state)
