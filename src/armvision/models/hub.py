"""Weights on the Hugging Face Hub: download (cache, offline mode, revisions) and upload, through `huggingface_hub`.

    model = armvision.from_pretrained("hf-hub:OliverRen/ARM", filename="arm_base_pretrain.pth")
    model = armvision.from_pretrained("hf-hub:someone/arm-b-ft@v1.0")          # a save_pretrained repo, a revision
    armvision.push_to_hub(model, "someone/arm-b-ft", accuracy={"imagenet top-1": 83.2})

Every file goes through `hf_hub_download` (so `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE=1` and revisions behave as
everywhere else in the Hugging Face ecosystem) and then through armvision's safe loader (`load_model` /
`load_checkpoint`: `weights_only` unpickling, reference checkpoints converted).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from torch import nn

from ..errors import CheckpointError
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_model, save_pretrained

HUB_PREFIX = "hf-hub:"
OFFICIAL_REPO = "OliverRen/ARM"


def is_hub_id(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def split_hub_id(source: str, revision: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """"hf-hub:owner/name@rev" (prefix optional) -> ("owner/name", rev); an explicit `revision` wins."""
    repo = source[len(HUB_PREFIX):] if source.startswith(HUB_PREFIX) else source
    if "@" in repo:
        repo, rev = repo.split("@", 1)
        revision = revision or rev
    if repo.count("/") != 1:
        raise CheckpointError(f"{source!r} is not a Hub model id; expected 'hf-hub:owner/name' (optionally '@revision')")
    return repo, revision


def hub_download(repo_id: str, filename: str, revision: Optional[str] = None,
                 cache_dir: Optional[Union[str, os.PathLike]] = None, token: Optional[str] = None) -> Path:
    """One file of a Hub model repo, from the local cache when it is there (the only source with HF_HUB_OFFLINE=1)."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, OfflineModeIsEnabled
    except ImportError as e:  # pragma: no cover - huggingface_hub comes with timm
        raise CheckpointError(f"loading from the Hub needs huggingface_hub ({e}): pip install -U huggingface_hub") from None
    from ..version import __version__

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                                    library_name="armvision", library_version=__version__))
    except (EntryNotFoundError, OfflineModeIsEnabled, FileNotFoundError) as e:
        where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
        raise CheckpointError(
            f"cannot get {where} from the Hugging Face Hub: {str(e).splitlines()[0][:200]} (offline or not cached: "
            "run once with network access, or download the file and pass its path)"
        ) from None
    except Exception as e:  # network / HTTP errors of huggingface_hub: one line naming the file
        where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
        raise CheckpointError(f"cannot get {where} from the Hugging Face Hub: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None


def from_hub(source: str, filename: Optional[str] = None, revision: Optional[str] = None,
             cache_dir: Optional[Union[str, os.PathLike]] = None, token: Optional[str] = None, key: str = "model",
             strict: bool = True, **overrides: Any) -> nn.Module:
    """Model from "hf-hub:owner/name[@rev]": `filename` (any checkpoint `load_model` reads, e.g. a reference .pth),
    or without it the repo's config.json + model.safetensors (what `push_to_hub` writes)."""
    repo, revision = split_hub_id(source, revision)
    if filename:
        path = hub_download(repo, filename, revision, cache_dir, token)
    else:
        hub_download(repo, CONFIG_NAME, revision, cache_dir, token)
        path = hub_download(repo, WEIGHTS_NAME, revision, cache_dir, token).parent  # the snapshot directory
    model, _ = load_model(path, key=key, strict=strict, **overrides)
    return model


# ---- model card ---------------------------------------------------------------------------------------------------
def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_card(model: nn.Module, repo_id: Optional[str] = None, description: Optional[str] = None,
               accuracy: Optional[Mapping[str, float]] = None, training: Optional[str] = None,
               label_names: Optional[List[str]] = None) -> str:
    """README.md for a weights folder: what the weights are, how they were made, measured accuracy if known."""
    cfg = model.config
    kind = cfg.kind
    what = {"classifier": "an image classifier (four-direction Mamba, middle cls token)",
            "pretrainer": "an ARM pretraining model (causal Mamba encoder + cross-attention decoder)",
            "mae": "an MAE-style pretraining model on the Mamba backbone",
            "contrastive": "a SimCLR-style contrastive pretraining model on the Mamba backbone"}.get(kind, kind)
    size = getattr(cfg, "size", None) or "custom"
    img = cfg.img_size if isinstance(cfg.img_size, int) else "x".join(str(v) for v in cfg.img_size)
    tags = ["armvision", "mamba", "vision", "image-classification" if kind == "classifier" else "self-supervised"]
    lines = ["---", "library_name: armvision", "license: apache-2.0", "tags:"] + [f"- {t}" for t in tags]
    lines += ["---", "", f"# {repo_id or f'ARM-{size} {kind}'}", ""]
    lines += [description or f"Weights of {what}, ARM size `{size}`, saved by armvision.", ""]
    lines += ["## Model", "", "| | |", "|---|---|",
              f"| kind | {kind} |", f"| size | {size} (width {cfg.embed_dim}, depth {cfg.depth}) |",
              f"| input | {img} px, patch {cfg.patch_size} |", f"| parameters | {_param_count(model):,} |"]
    if kind == "classifier":
        lines.append(f"| classes | {cfg.num_classes} ({'global average pool' if cfg.global_pool else 'cls token'}) |")
        if label_names:
            more = f", ... ({len(label_names)} in all)" if len(label_names) > 20 else ""
            shown = ", ".join(label_names[:20]) + more
            lines.append(f"| class names | {shown} (all in `config.json`, `label_names`) |")
    if kind == "pretrainer":
        lines.append(f"| clusters | {cfg.cluster_size}x{cfg.cluster_size} patches, {cfg.ordering} order |")
    lines += ["", "Full configuration (`config.json`):", "", "```json",
              json.dumps(dataclasses.asdict(cfg), indent=1), "```", ""]
    lines += ["## How the weights were made", "",
              training or "Not recorded. (Pass `training=...` to `save_pretrained` / `push_to_hub` to describe the "
                          "data, recipe and steps.)", ""]
    lines += ["## Accuracy", ""]
    if accuracy:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in accuracy.items()]
    else:
        lines.append("Not measured for these weights.")
    src = f"hf-hub:{repo_id}" if repo_id else "path/to/this/folder"
    lines += ["", "## Use", "", "```python", "import armvision", f'model = armvision.from_pretrained("{src}")', "```",
              "", "Format: `model.safetensors` (weights) + `config.json` (armvision model config); "
                  "`armvision.load_checkpoint` also reads the reference ARM `.pth` files.", ""]
    return "\n".join(lines)


def push_to_hub(model: nn.Module, repo_id: str, *, revision: Optional[str] = None, private: Optional[bool] = None,
                token: Optional[str] = None, commit_message: str = "Upload armvision model",
                description: Optional[str] = None, accuracy: Optional[Mapping[str, float]] = None,
                training: Optional[str] = None, create_repo: bool = True) -> Any:
    """save_pretrained (safetensors + config.json + README.md model card) into a temp dir, then upload it."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    if create_repo:
        api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, repo_id=repo_id, description=description, accuracy=accuracy, training=training)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision, commit_message=commit_message)


def pretrained_source(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Where a timm pretrained_cfg points: {"file": path} or {"repo_id", "filename", "revision"}."""
    if cfg.get("file"):
        return {"file": cfg["file"]}
    if cfg.get("hf_hub_id"):
        repo, rev = split_hub_id(cfg["hf_hub_id"])
        filename = cfg.get("hf_hub_filename") or WEIGHTS_NAME
        return {"repo_id": repo, "filename": filename, "revision": rev}
    raise CheckpointError(f"no weights are known for {cfg.get('architecture', 'this model')}: pass "
                          "pretrained_cfg_overlay=dict(file=PATH) or dict(hf_hub_id=..., hf_hub_filename=...)")
