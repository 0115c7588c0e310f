"""Loading and saving weights: ours (training dicts, safetensors directories) and the reference ARM `.pth` files.

One entry point, `load_checkpoint(model, path_or_dict, families, key="model")`, renames nothing (our parameter names
are the reference's). What a checkpoint is, and what config it implies, each model class answers for its own
parameter names (`matches_state_dict`, `config_from_state_dict`), asked in turn over the `families` the caller passes
(`registry.FAMILIES`; `armvision.load_checkpoint` and friends are these functions bound to it); converting between
kinds is the model's own `filter_state_dict` (the classifier's is `classifier.checkpoint_filter_fn`: directions
copied, decoder dropped, position embedding resampled around a zero middle cls slot, as the reference finetuning
script does). Loading is safe: `torch.load` runs with `weights_only=True` and allows `argparse.Namespace` (which
reference files hold) and nothing else. Class names travel as `label_names` (a list of str, index = class id) at the
top level of a checkpoint dict or of `config.json`, and on a loaded model as `model.pretrained_cfg["label_names"]`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..fileio import atomic_write, atomic_write_via
from .backbone import MambaBackbone
from .config import BackboneConfig, config_from_dict, read_config_json, saved_model_config
from .hub import CONFIG_NAME, HUB_PREFIX, WEIGHTS_NAME, hub_download, split_hub_id, upload_folder
from .hub import model_card as make_model_card

PathOrDict = Union[str, os.PathLike, Mapping[str, Any]]
Families = Mapping[str, Any]  # kind -> model class (registry.FAMILIES)
FORMAT_VERSION = 1
log = logging.getLogger("armvision")


@dataclass
class LoadReport:
    source: str  # "pretrainer", "classifier", "mae", "contrastive" or "backbone": what the state dict was
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
_TORCH_ADVICE = ("weights_only", "trusted source", "file an issue", "Please", "In PyTorch", "Check the documentation",
                 "torch.serialization", "safe_globals", "internal miniz error", "high likelihood")


def _torch_reason(e: BaseException) -> str:
    """What is wrong, from an exception of torch.load, without PyTorch's advice (which is to disable safe loading)."""
    for line in str(e).splitlines():
        line = line.strip()
        for sentence in line.split(". "):
            if sentence and not any(a in sentence for a in _TORCH_ADVICE) and not sentence.startswith("Weights only"):
                return sentence.strip().rstrip(".")[:160]
    return type(e).__name__


def safe_torch_load(path: Path) -> Any:
    """torch.load(path) with weights_only=True on the CPU, allowing argparse.Namespace (which reference checkpoints
    hold) and nothing else: a pickle that asks to import or run anything is refused before it runs. Every failure is
    one CheckpointError naming the file, in our words (never the advice to load unsafely)."""
    import warnings

    path = Path(path)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4 ...": nothing a user can act on
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m or "GLOBAL" in str(e):
            what = m.group(1) if m else "an unknown global"
            raise CheckpointError(
                f"refused to load {path}: the file asks to import or run {what}, which a weights file never needs "
                "(only tensors, plain containers and argparse.Namespace are loaded); if you made the file, save the "
                "state dict again, or as .safetensors"
            ) from None
        raise CheckpointError(f"{path} is not a checkpoint armvision can read ({_torch_reason(e)})") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read it") from None
    except Exception as e:  # truncated zip, legacy pickle garbage, text files: the unpickler raises many types
        size = path.stat().st_size if path.exists() else 0
        with open(path, "rb") as f:
            head = f.read(4)
        why = _torch_reason(e) if head[:2] == b"PK" or head[:1] == b"\x80" else "neither a zip archive nor a pickle"
        raise CheckpointError(f"{path} ({size} bytes) is truncated or not a checkpoint ({why})") from None


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
            meta = read_config_json(cfg)
            out["model_config"] = meta["model_config"]
            if "label_names" in meta:  # the class names (index = class id), as finetuning stored them
                out["label_names"] = meta["label_names"]
        return out
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint")
    if path.suffix == ".safetensors":
        return {"model": _load_safetensors(path)}
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    if obj.get("model_config") is not None:
        obj = {**obj, "model_config": saved_model_config(obj["model_config"], f"{path}: model_config")}
    return dict(obj)


def require_finite(tensors: Mapping[str, Tensor], source: str) -> None:
    """CheckpointError naming `source` when weights hold NaN or infinite values (a run that diverged, a damaged file):
    such a model predicts nothing (every output NaN), so evaluating or exporting it would only mislead. `tensors`:
    a state dict or `dict(model.named_parameters())` (buffers such as ARM's -inf attention mask are not weights)."""
    bad = [k for k, v in tensors.items() if isinstance(v, Tensor) and (v.is_floating_point() or v.is_complex())
           and not bool(torch.isfinite(v.detach()).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{source}: {len(bad)} weight tensor(s) hold NaN or infinite values ({shown}); the "
                              "model cannot predict with them. Was the run diverging? Use an earlier checkpoint")


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
    odd = [str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if odd or not sd:
        raise CheckpointError(f"{where}: its {key!r} entry is not a state dict (" + (
            f"{len(odd)} entries are not named tensors: {', '.join(odd[:3])[:120]}" if odd else "it is empty") + ")")
    for prefix in ("module.", "_orig_mod."):  # DDP / torch.compile wrappers
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def state_dict_kind(sd: Mapping[str, Tensor], families: Families) -> str:
    """Which model family wrote a state dict ("pretrainer", "classifier", "mae", "contrastive"), asked of each of
    `families` (`matches_state_dict`, which knows its own parameter names); "backbone" when none claims it."""
    for kind, cls in families.items():
        if cls.matches_state_dict(sd):
            return kind
    return "backbone"


# ---- inferring a config from a foreign state dict -----------------------------------------------------------------
def infer_config(sd: Mapping[str, Tensor], families: Families, args: Any = None) -> Dict[str, Any]:
    """Model config (with "kind") read off a state dict's shapes by the one of `families` that wrote it (a bare
    backbone becomes a pretrainer); `args` (a reference Namespace) fills the rest."""
    kind = state_dict_kind(sd, families)
    cls = families.get(kind, MambaBackbone)
    try:
        cfg = dict(cls.config_from_state_dict(sd, args), kind="pretrainer" if kind == "backbone" else kind)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"cannot read the model's sizes off the {kind} state dict: its tensors do not have the "
                              f"shapes of one ({type(e).__name__}: {str(e)[:120]})") from None
    if args is not None and getattr(args, "input_size", None):
        cfg["img_size"] = args.input_size
    return cfg


def _size_summary(sd: Mapping[str, Tensor]) -> str:
    try:
        c = MambaBackbone.config_from_state_dict(sd)
        return f"embed_dim {c['embed_dim']}, depth {c['depth']}, patch {c['patch_size']}"
    except CheckpointError:
        return "an unknown geometry"


def _leave_out(sd: Dict[str, Tensor], exclude: Tuple[str, ...], report: LoadReport) -> None:
    dropped = [k for k in sd if k.startswith(exclude)] if exclude else []
    for k in dropped:
        del sd[k]
    if dropped:
        report.converted.append(f"left out {', '.join(dropped)}")


def _name_dropped_heads(before: Mapping[str, Tensor], after: Mapping[str, Tensor], report: LoadReport,
                        families: Families) -> None:
    """Name in the report the pretraining heads (the source family's `pretraining_heads`, e.g. the contrastive
    projection head) that the model's filter dropped."""
    heads = getattr(families.get(report.source), "pretraining_heads", {})
    for prefix, what in heads.items():
        gone = [k for k in before if k.startswith(prefix + ".") and k not in after]
        if gone:
            report.converted.append(f"dropped the {what} ({prefix}.*, {len(gone)} tensors)")


def _check_fit(model: nn.Module, sd: Dict[str, Tensor], own: Mapping[str, Tensor], where: str, strict: bool,
               exclude: Tuple[str, ...], report: LoadReport) -> None:
    """Fill the report's skipped / missing / unexpected lists; with strict, raise on anything unexplained."""
    kind = getattr(getattr(model, "config", None), "kind", None)
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
    new = tuple(getattr(model, "new_when_finetuning", ())) if report.source != "classifier" else ()
    report.missing = sorted(k for k in own if k not in sd and k not in mismatched)
    report.unexpected = sorted(k for k in sd if k not in own)
    unexplained = [k for k in report.missing if k.split(".")[0] not in new and not (exclude and k.startswith(exclude))]
    if strict and (unexplained or report.unexpected):
        raise CheckpointError(
            f"{where} ({report.source} weights) does not match this {kind or type(model).__name__}: "
            f"missing {unexplained[:5]}{'...' if len(unexplained) > 5 else ''}, "
            f"unexpected {report.unexpected[:5]}{'...' if len(report.unexpected) > 5 else ''}. The checkpoint has "
            f"{_size_summary(sd)}; the model has {_size_summary(own)} (pass strict=False to load what fits)"
        )


def load_checkpoint(model: nn.Module, source: PathOrDict, families: Families, key: str = "model", strict: bool = True,
                    exclude: Tuple[str, ...] = ()) -> LoadReport:
    """Load weights from `source` (path, directory, or already-loaded dict) into `model`; `families` say what the
    state dict is (the report's `source`).

    The model's own `filter_state_dict` (its checkpoint_filter_fn) first adapts the state dict, e.g. a pretraining
    one for a classifier. key: "model" or "model_ema"/"ema" (EMA weights). strict: shape mismatches and unexplained
    missing or unexpected keys raise CheckpointError; with strict=False they are skipped and listed in the report.
    exclude: key prefixes (e.g. ("head.",) for a new number of classes) neither loaded nor expected.
    """
    where = str(source) if not isinstance(source, Mapping) else "the given dict"
    sd = select_state_dict(read_checkpoint(source), key, where)
    report = LoadReport(source=state_dict_kind(sd, families))
    if hasattr(model, "filter_state_dict"):
        before, sd = sd, model.filter_state_dict(sd, report)
        _name_dropped_heads(before, sd, report, families)
    exclude = tuple(exclude)
    _leave_out(sd, exclude, report)
    own = model.state_dict()
    _check_fit(model, sd, own, where, strict, exclude, report)
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return report


# ---- our own format -----------------------------------------------------------------------------------------------
def save_pretrained(model: nn.Module, directory: Union[str, os.PathLike], model_card: bool = True,
                    label_names: Union[List[str], None] = None, **card: Any) -> Path:
    """Write `config.json` + `model.safetensors` (+ a `README.md` model card unless model_card=False) so
    `from_pretrained(directory)` rebuilds the model. `label_names`: the class names (index = class id; default: the
    model's pretrained_cfg["label_names"] if any), kept in config.json and the card. `card`: repo_id, description,
    accuracy (dict), training (text)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_via(directory / WEIGHTS_NAME, lambda p: save_file(sd, str(p), metadata={"format": "pt"}))
    meta = {"format_version": FORMAT_VERSION, "library": "armvision", "model_config": dataclasses.asdict(model.config)}
    if label_names is None:
        label_names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    if label_names is not None:
        meta["label_names"] = [str(n) for n in label_names]
    atomic_write(directory / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    if model_card:
        atomic_write(directory / "README.md", make_model_card(model, label_names=meta.get("label_names"), **card))
    return directory


def _label_names(ckpt: Mapping[str, Any], model: nn.Module, where: str) -> Optional[List[str]]:
    """The checkpoint's `label_names` when they are a list of str that fits the model's head; None otherwise (with a
    warning naming the file, unless the model has no head for them to describe, e.g. a pretrainer)."""
    names = ckpt.get("label_names")
    n = getattr(model, "num_classes", None)
    if names is None or not n:
        return None
    if not isinstance(names, (list, tuple)) or not all(isinstance(x, str) for x in names):
        log.warning("%s: label_names is not a list of class names; ignored", where)
        return None
    if len(names) != n:
        log.warning("%s: %d label_names for a %d-class head; ignored", where, len(names), n)
        return None
    return list(names)


def load_model(source: PathOrDict, families: Families, key: str = "model", strict: bool = True,
               where: Optional[str] = None, **overrides: Any) -> Tuple[nn.Module, LoadReport]:
    """Build the model a checkpoint describes (our "model_config", a save_pretrained dir, or inferred from a reference
    state dict by `families`) and load it. `overrides` change the config, e.g. kind="classifier", num_classes=10,
    img_size=384. The model's pretrained_cfg is its own config's recipe plus the checkpoint's `label_names` (the one
    place class names are read from checkpoints and folders). `where`: the file to name in errors and warnings when
    `source` is a dict already read from it."""
    ckpt = read_checkpoint(source)
    where = where or (str(source) if not isinstance(source, Mapping) else "the given dict")
    sd = select_state_dict(ckpt, key, where)
    if isinstance(ckpt.get("model_config"), Mapping):
        cfg = dict(ckpt["model_config"])
    else:
        cfg = infer_config(sd, families, ckpt.get("args"))
    if overrides.get("kind", cfg["kind"]) != cfg["kind"]:  # e.g. a classifier from a pretraining checkpoint
        keep = ("embed_dim", "depth", "img_size", "patch_size", "in_chans", "d_state", "d_conv", "expand", "norm_eps", "size",
                "block")
        cfg = {k: v for k, v in cfg.items() if k in keep}
    cfg.update(overrides)
    if cfg.get("kind") not in families:
        raise CheckpointError(f"{where}: unknown model kind {cfg.get('kind')!r}; expected one of {sorted(families)}")
    model = families[cfg["kind"]](config_from_dict(BackboneConfig, cfg, f"{where}: model config"))
    try:
        report = load_checkpoint(model, {key: sd}, families, key=key, strict=strict)
    except CheckpointError as e:  # (it was handed the state dict: name the file)
        raise type(e)(str(e).replace("the given dict", where)) from None
    names = _label_names(ckpt, model, where)
    if names:
        model.pretrained_cfg["label_names"] = names
    return model, report


def from_pretrained(source: Union[str, os.PathLike], families: Families, filename: Optional[str] = None,
                    revision: Optional[str] = None, cache_dir: Union[str, os.PathLike, None] = None,
                    key: str = "model", token: Optional[str] = None, **overrides: Any) -> nn.Module:
    """Rebuild a model from a `save_pretrained` directory, any checkpoint `load_model` understands, or the Hugging Face
    Hub: "hf-hub:owner/name[@revision]" with `filename` (e.g. a reference .pth) or without (config.json +
    model.safetensors), downloaded through huggingface_hub's cache (HF_HUB_OFFLINE=1 reads the cache only)."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        repo, revision = split_hub_id(source, revision)
        if filename:
            path = hub_download(repo, filename, revision, cache_dir, token)
        else:
            hub_download(repo, CONFIG_NAME, revision, cache_dir, token)
            path = hub_download(repo, WEIGHTS_NAME, revision, cache_dir, token).parent  # the snapshot directory
    else:
        path = Path(source) / filename if filename else source
    return load_model(path, families, key=key, **overrides)[0]


def push_to_hub(model: nn.Module, repo_id: str, *, revision: Optional[str] = None, private: Optional[bool] = None,
                token: Optional[str] = None, commit_message: str = "Upload armvision model",
                description: Optional[str] = None, accuracy: Optional[Mapping[str, float]] = None,
                training: Optional[str] = None, create_repo: bool = True) -> Any:
    """save_pretrained (safetensors + config.json + README.md model card) into a temp dir, then upload it; a failure
    (no network, HF_HUB_OFFLINE=1, no write access) is one HubError line."""
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, repo_id=repo_id, description=description, accuracy=accuracy, training=training)
        return upload_folder(tmp, repo_id, revision=revision, private=private, token=token,
                             commit_message=commit_message, create_repo=create_repo)
