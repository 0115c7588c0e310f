"""Loading and saving weights: ours (training dicts, safetensors directories) and the reference ARM `.pth` files.

One entry point, `load_checkpoint(model, path_or_dict, key="model")`, renames nothing (our parameter names are the
reference's) but converts between model kinds the way the reference finetuning script does: a pretraining state
dict loads into a classifier with each single-direction mixer tensor copied into all four directions, the decoder
dropped and the position embedding resampled around a zero middle cls slot. Loading is safe: `torch.load` runs with
`weights_only=True` and allows `argparse.Namespace` (which reference files hold) and nothing else.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..nn import resample_with_middle_token
from ..nn.mamba import DIRECTION_SUFFIXES

PathOrDict = Union[str, os.PathLike, Mapping[str, Any]]
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
FORMAT_VERSION = 1
DECODER_PREFIXES = ("ar_token", "dec_pos_embed", "mask", "enc2dec.", "dec_block.", "ar_norm.", "ar_pred.",
                    "mask_token", "decoder_")
_NORM_K = re.compile(r"^norm_\d+\.")
_LAYER = re.compile(r"^layers\.(\d+)\.")


@dataclass
class LoadReport:
    source: str  # "pretrainer", "classifier", "mae" or "backbone": what the state dict was
    missing: List[str] = field(default_factory=list)  # model keys not in the checkpoint (left as initialised)
    unexpected: List[str] = field(default_factory=list)  # checkpoint keys the model has no place for
    resized: List[str] = field(default_factory=list)  # resampled or regenerated to fit (position embeddings)
    converted: List[str] = field(default_factory=list)  # what was adapted (directions copied, decoder dropped)
    skipped: List[str] = field(default_factory=list)  # shape mismatches ignored with strict=False

    def __str__(self) -> str:
        parts = [f"loaded a {self.source} state dict"]
        for name in ("converted", "resized", "missing", "unexpected", "skipped"):
            items = getattr(self, name)
            if items:
                shown = ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")
                parts.append(f"{name}: {shown}")
        return "; ".join(parts)


# ---- reading files ------------------------------------------------------------------------------------------------
def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = re.search(r"GLOBAL ([\w.]+)", msg)
        if m or "Weights only load failed" in msg and "GLOBAL" in msg:
            what = m.group(1) if m else "an unknown global"
            raise CheckpointError(
                f"refused to load {path}: the file asks to import or run {what}, which a weights file never needs. "
                "Only plain tensors, containers and argparse.Namespace are allowed; re-save it as a state dict "
                "or .safetensors if you trust its origin"
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({msg.splitlines()[0][:200]})") from None
    except Exception as e:  # truncated zip, legacy pickle garbage, text files: the unpickler raises many types
        size = path.stat().st_size
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} ({size} bytes) is truncated or not a checkpoint: {first}") from None


def read_checkpoint(source: PathOrDict) -> Dict[str, Any]:
    """Read a checkpoint file or directory into a dict (a training dict, or {"model": state_dict})."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        cfg, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not weights.exists():
            raise CheckpointError(f"{path} is a directory without {WEIGHTS_NAME}; expected one written by armvision.save_pretrained")
        out = {"model": _load_safetensors(weights)}
        if cfg.exists():
            try:
                out["model_config"] = json.loads(cfg.read_text())["model_config"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"{cfg} is not a valid armvision config ({e})") from None
        return out
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint")
    if path.suffix == ".safetensors":
        return {"model": _load_safetensors(path)}
    obj = _torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    return dict(obj)


def _load_safetensors(path: Path) -> Dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a valid .safetensors file ({str(e)[:160]})") from None


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def select_state_dict(ckpt: Mapping[str, Any], key: str = "model", where: str = "checkpoint") -> Dict[str, Tensor]:
    """Pick the state dict: `key` ("model", or "model_ema"/"ema" for EMA weights) or a bare state dict."""
    aliases = {"model_ema": ("model_ema", "ema"), "ema": ("ema", "model_ema")}.get(key, (key,))
    for k in aliases:
        if isinstance(ckpt.get(k), Mapping):
            sd = dict(ckpt[k])
            break
    else:
        if key == "model" and _is_state_dict(ckpt):
            sd = dict(ckpt)
        else:
            keys = [k for k, v in ckpt.items() if isinstance(v, Mapping)]
            raise CheckpointError(f"{where} has no {key!r} weights; it holds {sorted(keys) or sorted(ckpt)[:8]}")
    for prefix in ("module.", "_orig_mod."):  # DDP / torch.compile wrappers
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def state_dict_kind(sd: Mapping[str, Tensor]) -> str:
    if "ar_pred.weight" in sd or "dec_block.0.attn2.q.weight" in sd:
        return "pretrainer"
    if "mask_token" in sd:
        return "mae"
    if any(".mixer.conv1d_c." in k for k in sd):
        return "classifier"
    return "backbone"


# ---- inferring a config from a foreign state dict -----------------------------------------------------------------
def infer_config(sd: Mapping[str, Tensor], args: Any = None) -> Dict[str, Any]:
    """Model config (with "kind") read off a state dict's shapes; `args` (a reference Namespace) fills the rest."""
    if "patch_embed.proj.weight" not in sd:
        raise CheckpointError("the state dict has no patch_embed.proj.weight: not an ARM / Vision Mamba checkpoint")
    w = sd["patch_embed.proj.weight"]
    layer_ids = {int(m.group(1)) for k in sd if (m := _LAYER.match(k))}
    cfg: Dict[str, Any] = dict(embed_dim=w.shape[0], in_chans=w.shape[1], patch_size=w.shape[2],
                               depth=max(layer_ids) + 1 if layer_ids else 0)
    if "layers.0.mixer.A_log" in sd:
        cfg["d_state"] = sd["layers.0.mixer.A_log"].shape[1]
        cfg["d_conv"] = sd["layers.0.mixer.conv1d.weight"].shape[-1]
        cfg["expand"] = sd["layers.0.mixer.in_proj.weight"].shape[0] // (2 * cfg["embed_dim"])
    kind = state_dict_kind(sd)
    n_pos = sd["pos_embed"].shape[1] if "pos_embed" in sd else None
    if kind == "classifier":
        cfg["kind"] = "classifier"
        if "head.weight" in sd:
            cfg["num_classes"] = sd["head.weight"].shape[0]
        n_patches = n_pos - 1 if n_pos else None
        if args is not None and getattr(args, "global_pool", None) is not None:
            cfg["global_pool"] = bool(args.global_pool)
    else:
        cfg["kind"] = "mae" if kind == "mae" else "pretrainer"
        n_patches = n_pos
        if kind == "pretrainer":
            cfg["decoder_embed_dim"] = sd["ar_token"].shape[-1]
            cfg["decoder_depth"] = len({k.split(".")[1] for k in sd if k.startswith("dec_block.")})
            if "mask" in sd:
                first_row = sd["mask"][0]
                t = int((first_row == 0).sum())
                cfg["cluster_size"] = int(round(math.sqrt(t)))
    if n_patches:
        side = int(round(math.sqrt(n_patches)))
        if side * side == n_patches:
            cfg["img_size"] = side * cfg["patch_size"]
    if args is not None and getattr(args, "input_size", None):
        cfg["img_size"] = int(args.input_size)
    return cfg


# ---- conversion between model kinds -------------------------------------------------------------------------------
def _expand_directions(sd: Dict[str, Tensor], n_dirs: int, report: LoadReport) -> None:
    """Copy single-direction mixer tensors (conv1d, x_proj, dt_proj, A_log, D) into the other directions."""
    added = 0
    for k in list(sd):
        m = re.match(r"^(layers\.\d+\.mixer\.)(conv1d|x_proj|dt_proj)\.(weight|bias)$", k)
        a = re.match(r"^(layers\.\d+\.mixer\.)(A_log|D)$", k)
        for s in DIRECTION_SUFFIXES[1:n_dirs]:
            if m:
                new = f"{m.group(1)}{m.group(2)}{s}.{m.group(3)}"
            elif a:
                new = f"{a.group(1)}A{s}_log" if a.group(2) == "A_log" else f"{a.group(1)}D{s}"
            else:
                continue
            if new not in sd:
                sd[new] = sd[k].clone()
                added += 1
    if added:
        report.converted.append(f"copied single-direction mixer tensors into {n_dirs} directions ({added} tensors)")


def _grid_of(n: int, what: str) -> Tuple[int, int]:
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise CheckpointError(f"cannot resample {what}: {n} positions is not a square grid")
    return side, side


def _adapt_for_classifier(model: nn.Module, sd: Dict[str, Tensor], report: LoadReport) -> None:
    if report.source in ("pretrainer", "mae", "backbone"):
        dropped = [k for k in sd if k.startswith(DECODER_PREFIXES) or _NORM_K.match(k)]
        for k in dropped:
            del sd[k]
        if dropped:
            report.converted.append(f"dropped {len(dropped)} decoder tensors")
        _expand_directions(sd, model.directions, report)
    if "pos_embed" not in sd:
        return
    pe, target = sd["pos_embed"], model.pos_embed
    n_model = target.shape[1] - 1
    if report.source == "classifier":
        if pe.shape[1] != target.shape[1]:
            sd["pos_embed"] = resample_with_middle_token(pe, _grid_of(pe.shape[1] - 1, "pos_embed"), model.grid_size)
            report.resized.append(f"pos_embed {tuple(pe.shape)} -> {tuple(target.shape)} (bicubic, cls slot kept)")
    else:  # pretraining table: no cls token; resample, then a zero vector at the middle slot (reference finetuning)
        zero = torch.zeros(1, 1, pe.shape[-1], dtype=pe.dtype)
        sd["pos_embed"] = resample_with_middle_token(pe, _grid_of(pe.shape[1], "pos_embed"), model.grid_size, cls_pos=zero)
        report.resized.append(f"pos_embed {tuple(pe.shape)} -> {tuple(sd['pos_embed'].shape)} (bicubic {n_model} patches + zero middle cls)")


def _adapt_for_fixed_tables(model: nn.Module, sd: Dict[str, Tensor], report: LoadReport) -> None:
    """Pretrainer / MAE: the fixed sin-cos tables load as saved when they fit; for another geometry they are the
    model's own (regenerated). The block-causal mask is always derived from the model's geometry."""
    if report.source == "classifier":
        raise CheckpointError(
            f"this is a finetuned classifier checkpoint; a {model.config.kind} needs a pretraining checkpoint "
            "(build the model with armvision.create_classifier to load it)"
        )
    own = model.state_dict()
    for k in ("pos_embed", "dec_pos_embed", "decoder_pos_embed", "mask"):
        if k in sd and k in own and (k == "mask" or sd[k].shape != own[k].shape):
            if sd[k].shape != own[k].shape:
                report.resized.append(f"{k} {tuple(sd[k].shape)} -> {tuple(own[k].shape)} (regenerated for this geometry)")
            sd[k] = own[k].clone()


def _size_summary(sd: Mapping[str, Tensor]) -> str:
    try:
        c = infer_config(sd)
        return f"embed_dim {c['embed_dim']}, depth {c['depth']}, patch {c['patch_size']}"
    except CheckpointError:
        return "an unknown geometry"


def load_checkpoint(model: nn.Module, source: PathOrDict, key: str = "model", strict: bool = True,
                    exclude: Tuple[str, ...] = ()) -> LoadReport:
    """Load weights from `source` (path, directory, or already-loaded dict) into `model`.

    key: "model" or "model_ema"/"ema" (EMA weights). strict: shape mismatches and unexplained missing or unexpected
    keys raise CheckpointError; with strict=False they are skipped and listed in the report. exclude: key prefixes
    (e.g. ("head.",) for a new number of classes) neither loaded nor expected.
    """
    where = str(source) if not isinstance(source, Mapping) else "the given dict"
    sd = select_state_dict(read_checkpoint(source), key, where)
    report = LoadReport(source=state_dict_kind(sd))
    kind = getattr(getattr(model, "config", None), "kind", None)
    if kind == "classifier":
        _adapt_for_classifier(model, sd, report)
    elif kind in ("pretrainer", "mae"):
        _adapt_for_fixed_tables(model, sd, report)
    exclude = tuple(exclude)
    if exclude:
        dropped = [k for k in sd if k.startswith(exclude)]
        for k in dropped:
            del sd[k]
        if dropped:
            report.converted.append(f"left out {', '.join(dropped)}")
    own = model.state_dict()
    mismatched = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if mismatched and strict:
        lines = ", ".join(f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:3])
        raise CheckpointError(
            f"{where} does not fit this model: {len(mismatched)} tensors differ in shape ({lines}). The checkpoint "
            f"has {_size_summary(sd)}; the model has {_size_summary(own)}. Build the model with the checkpoint's size "
            "(or pass strict=False to skip those tensors)"
        )
    for k in mismatched:
        report.skipped.append(f"{k} {tuple(sd.pop(k).shape)}")
    expected_new = {"cls_token", "norm_f.weight", "norm_f.bias", "head.weight", "head.bias"} if report.source != "classifier" else set()
    report.missing = sorted(k for k in own if k not in sd and k not in mismatched)
    report.unexpected = sorted(k for k in sd if k not in own)
    unexplained = [k for k in report.missing if k not in expected_new and not (exclude and k.startswith(exclude))]
    if strict and (unexplained or report.unexpected):
        raise CheckpointError(
            f"{where} ({report.source} weights) does not match this {kind or type(model).__name__}: "
            f"missing {unexplained[:5]}{'...' if len(unexplained) > 5 else ''}, "
            f"unexpected {report.unexpected[:5]}{'...' if len(report.unexpected) > 5 else ''}. The checkpoint has "
            f"{_size_summary(sd)}; the model has {_size_summary(own)} (pass strict=False to load what fits)"
        )
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return report


# ---- our own format -----------------------------------------------------------------------------------------------
def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then rename over `path`, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_pretrained(model: nn.Module, directory: Union[str, os.PathLike], model_card: bool = True,
                    **card: Any) -> Path:
    """Write `config.json` + `model.safetensors` (+ a `README.md` model card unless model_card=False) so
    `from_pretrained(directory)` rebuilds the model. `card`: repo_id, description, accuracy (dict), training (text)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(sd, p, metadata={"format": "pt"}))
    meta = {"format_version": FORMAT_VERSION, "library": "armvision", "model_config": dataclasses.asdict(model.config)}
    atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))
    if model_card:
        from .hub import model_card as make_card

        text = make_card(model, **card)
        atomic_write(directory / "README.md", lambda p: Path(p).write_text(text))
    return directory


def load_model(source: PathOrDict, key: str = "model", strict: bool = True, **overrides: Any) -> Tuple[nn.Module, LoadReport]:
    """Build the model a checkpoint describes (our "model_config", a save_pretrained dir, or inferred from a reference
    state dict) and load it. `overrides` change the config, e.g. kind="classifier", num_classes=10, img_size=384."""
    from .registry import build_model

    ckpt = read_checkpoint(source)
    sd = select_state_dict(ckpt, key, str(source) if not isinstance(source, Mapping) else "the given dict")
    cfg = dict(ckpt["model_config"]) if isinstance(ckpt.get("model_config"), Mapping) else infer_config(sd, ckpt.get("args"))
    if overrides.get("kind", cfg["kind"]) != cfg["kind"]:  # e.g. a classifier from a pretraining checkpoint
        keep = ("embed_dim", "depth", "img_size", "patch_size", "in_chans", "d_state", "d_conv", "expand", "norm_eps", "size")
        cfg = {k: v for k, v in cfg.items() if k in keep}
    cfg.update(overrides)
    model = build_model(cfg)
    return model, load_checkpoint(model, {key: sd}, key=key, strict=strict)


def from_pretrained(source: Union[str, os.PathLike], filename: Union[str, None] = None, revision: Union[str, None] = None,
                    cache_dir: Union[str, os.PathLike, None] = None, key: str = "model", **overrides: Any) -> nn.Module:
    """Rebuild a model from a `save_pretrained` directory, any checkpoint `load_model` understands, or the Hugging Face
    Hub: "hf-hub:owner/name[@revision]" with `filename` (e.g. a reference .pth) or without (config.json +
    model.safetensors), downloaded through huggingface_hub's cache (HF_HUB_OFFLINE=1 reads the cache only)."""
    if isinstance(source, str) and source.startswith("hf-hub:"):
        from .hub import from_hub

        return from_hub(source, filename=filename, revision=revision, cache_dir=cache_dir, key=key, **overrides)
    path = Path(source) / filename if filename else source
    return load_model(path, key=key, **overrides)[0]
