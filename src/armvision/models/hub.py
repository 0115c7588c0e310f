"""The Hugging Face Hub, below the model code: download one file (cache, offline mode, revisions, a fast failure
without network), upload a folder, where a timm pretrained_cfg points, and the model card. It imports no model
module; `checkpoint.py` builds `from_pretrained("hf-hub:...")` and `push_to_hub` on top of it.

Every file goes through `hf_hub_download`, so `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE=1` and revisions behave as
everywhere else in the Hugging Face ecosystem.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from torch import nn

from ..errors import CheckpointError

HUB_PREFIX = "hf-hub:"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"  # a save_pretrained folder, on disk or on the Hub
LOCAL_COPY = " (timm: pretrained_cfg_overlay=dict(file=PATH))"
PROBE_TIMEOUT = 5.0  # seconds: the one request that tells "no connection" before huggingface_hub's retries


class HubError(CheckpointError):
    """The Hugging Face Hub could not be reached, or refused a download or an upload."""


def split_hub_id(source: str, revision: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """"hf-hub:owner/name@rev" (prefix optional) -> ("owner/name", rev); an explicit `revision` wins."""
    repo = source[len(HUB_PREFIX):] if source.startswith(HUB_PREFIX) else source
    if "@" in repo:
        repo, rev = repo.split("@", 1)
        revision = revision or rev
    if repo.count("/") != 1:
        raise CheckpointError(f"{source!r} is not a Hub model id; expected 'hf-hub:owner/name' (optionally '@revision')")
    return repo, revision


def _reason(e: BaseException, limit: int = 160) -> str:
    """An exception as a short phrase: its type and its first sentence, never cut inside one."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if len(text) > limit:
        end = text.rfind(". ", 0, limit)
        text = text[: end + 1] if end > 0 else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _hub():
    """(huggingface_hub, its constants, its HTTP error class: the server answered with an error status)."""
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.utils import HfHubHTTPError
    except ImportError as e:  # pragma: no cover - huggingface_hub comes with timm
        raise HubError(f"the Hugging Face Hub needs huggingface_hub ({e}): pip install -U huggingface_hub") from None
    return huggingface_hub, constants, HfHubHTTPError


def _unreachable(repo_id: str, filename: str, revision: Optional[str], token, timeout: float) -> Optional[str]:
    """None when the Hub answers about the file (even "not found": hf_hub_download then says so); otherwise why it
    cannot be reached. One request, no retries."""
    hf, _, http_error = _hub()
    try:
        hf.get_hf_file_metadata(hf.hf_hub_url(repo_id, filename, revision=revision), token=token, timeout=timeout)
    except http_error:  # the server answered
        return None
    except Exception as e:  # connection refused, DNS, timeout, proxy: huggingface_hub would retry for ~30 s
        return _reason(e)
    return None


def hub_download(repo_id: str, filename: str, revision: Optional[str] = None,
                 cache_dir: Optional[Union[str, os.PathLike]] = None, token: Optional[str] = None,
                 timeout: float = PROBE_TIMEOUT) -> Path:
    """One file of a Hub model repo, from the local cache when it is there (the only source with HF_HUB_OFFLINE=1).
    Without a connection, a file that is not cached fails within `timeout` seconds with one line naming
    HF_HUB_OFFLINE=1 and the cache folder; a cached one is used."""
    hf, constants, _ = _hub()
    from ..version import __version__

    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    offline = bool(constants.HF_HUB_OFFLINE)
    if not offline and not isinstance(hf.try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir,
                                                                 revision=revision), str):
        problem = _unreachable(repo_id, filename, revision, token, timeout)
        if problem:
            raise HubError(
                f"cannot get {where}: the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached ({problem}) "
                f"and the file is not in the cache {cache}. Connect once to download it, or pass the path of a "
                f"local copy{LOCAL_COPY}; set HF_HUB_OFFLINE=1 to work from the cache alone without trying the network"
            )
    try:
        return Path(hf.hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                                       library_name="armvision", library_version=__version__))
    except Exception as e:  # one line naming the file, whatever huggingface_hub raised
        raise HubError(_download_error(e, where, cache, offline, constants.ENDPOINT)) from None


def _download_error(e: Exception, where: str, cache: Path, offline: bool, endpoint: str) -> str:
    name = type(e).__name__
    if offline:
        return (f"cannot get {where} from the Hugging Face Hub: HF_HUB_OFFLINE=1 is set and the file is not in the "
                f"cache {cache}. Unset HF_HUB_OFFLINE with network access to download it, or pass the path of a "
                f"local copy{LOCAL_COPY}")
    if name in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
        return f"cannot get {where} from the Hugging Face Hub: the repo has no such file"
    if name in ("RepositoryNotFoundError", "GatedRepoError"):
        return (f"cannot get {where} from the Hugging Face Hub: the repo does not exist or needs access "
                f"({_reason(e, 0)}); log in with `hf auth login` or pass token=... for a private repo")
    if name == "RevisionNotFoundError":
        return f"cannot get {where} from the Hugging Face Hub: the repo has no such revision"
    return (f"cannot get {where} from the Hugging Face Hub ({endpoint}): {_reason(e).rstrip('.')}. Cache folder: "
            f"{cache}; HF_HUB_OFFLINE=1 reads the cache alone")


def upload_folder(folder: Union[str, os.PathLike], repo_id: str, *, revision: Optional[str] = None,
                  private: Optional[bool] = None, token: Optional[str] = None, commit_message: str = "Upload",
                  create_repo: bool = True) -> Any:
    """Upload `folder` to the model repo `repo_id` (created first unless create_repo=False); any failure is one
    HubError line naming the repo and what to do."""
    hf, constants, http_error = _hub()
    try:
        api = hf.HfApi(token=token)
        if create_repo:
            api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                 commit_message=commit_message)
    except Exception as e:
        where = f"cannot push to {repo_id} on the Hugging Face Hub"
        if constants.HF_HUB_OFFLINE:
            raise HubError(f"{where}: HF_HUB_OFFLINE=1 is set; unset it to upload") from None
        if isinstance(e, http_error):
            hint = "check the repo name and that your token may write to it (`hf auth login`, or token=...)"
        else:
            hint = f"check the network connection to {constants.ENDPOINT}"
        raise HubError(f"{where} ({_reason(e)}): {hint}") from None


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
