"""Class names: where they are stored, how they are read back, and ImageNet's (through timm's ImageNetInfo).

A classifier's class names travel as `label_names` (a list of str; position = class id): the top-level key of a
finetuning checkpoint dict, the top-level key of `config.json` in a save_pretrained / convert folder (and a line of
its model card), and the ONNX metadata (`metadata_props["label_names"]`, a JSON list). `read_label_names` reads them
from any of those sources; `names_for` falls back to ImageNet-1k's names for a 1000-class model without stored names
and to the class ids otherwise.
"""
from __future__ import annotations

import functools
import json
import os
import pkgutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from ..errors import CheckpointError

LABEL_NAMES = "label_names"
Source = Union[str, os.PathLike, Mapping[str, Any]]


def checked_label_names(value: Any, where: str) -> Optional[list[str]]:
    """`value` as a list of class names (a JSON text of one is accepted), or None; CheckpointError naming `where`
    when it is something else."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise CheckpointError(f"{where}: {LABEL_NAMES} is not a JSON list ({value[:80]!r})") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise CheckpointError(f"{where}: {LABEL_NAMES} must be a list of class names (strings), got "
                              f"{type(value).__name__}")
    return list(value)


def onnx_metadata(path: Union[str, os.PathLike]) -> dict[str, str]:
    """The metadata_props of an ONNX file (the graph's weights are not loaded)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises its own types for files that are not ONNX
        raise CheckpointError(f"{path} is not a readable ONNX file ({type(e).__name__}: {str(e)[:160]})") from None
    return {p.key: p.value for p in model.metadata_props}


def _config_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a valid armvision config ({e})") from None


def read_label_names(source: Source, ckpt: Optional[Mapping[str, Any]] = None) -> Optional[list[str]]:
    """Class names stored with a model, or None: from `ckpt` (the checkpoint dict already read, when given), a
    checkpoint file, a save_pretrained folder, a Hub id ("hf-hub:owner/name", its config.json) or an ONNX file."""
    from ..models.hub import hub_download, is_hub_id, split_hub_id

    if ckpt is not None and LABEL_NAMES in ckpt:
        return checked_label_names(ckpt[LABEL_NAMES], str(source))
    if isinstance(source, Mapping):
        return checked_label_names(source.get(LABEL_NAMES), "the checkpoint dict")
    if is_hub_id(source):
        repo, revision = split_hub_id(str(source))
        try:
            path = hub_download(repo, "config.json", revision)
        except CheckpointError:
            return None  # a repo of reference weights has no config.json
        return checked_label_names(_config_json(path).get(LABEL_NAMES), str(source))
    path = Path(source)
    if path.is_dir():
        cfg = path / "config.json"
        return checked_label_names(_config_json(cfg).get(LABEL_NAMES), str(cfg)) if cfg.is_file() else None
    if path.suffix.lower() == ".onnx":
        return checked_label_names(onnx_metadata(path).get(LABEL_NAMES), str(path))
    if ckpt is None and path.suffix != ".safetensors":
        from ..models import read_checkpoint

        return checked_label_names(read_checkpoint(path).get(LABEL_NAMES), str(path))
    return None


@functools.lru_cache(maxsize=None)
def imagenet_label_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order ("tench", "goldfish", ...), from timm's ImageNetInfo."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo("imagenet-1k").label_descriptions())


@functools.lru_cache(maxsize=None)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 WordNet ids, sorted: position = ImageNet-1k class index (timm's ImageNetInfo)."""
    from timm.data import ImageNetInfo

    wnids = tuple(ImageNetInfo("imagenet-1k").label_names())
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids), "timm's ImageNet-1k synsets: 1000 sorted wnids"
    return wnids


@functools.lru_cache(maxsize=None)
def timm_synsets(name: str) -> tuple[str, ...]:
    """A WordNet-id list timm ships beside ImageNetInfo's (e.g. "imagenet_a_synsets.txt": ImageNet-A's 200)."""
    data = pkgutil.get_data("timm.data", f"_info/{name}")
    if data is None:  # pragma: no cover - shipped with timm since ImageNetInfo
        raise FileNotFoundError(f"timm does not ship {name}")
    return tuple(line.strip() for line in data.decode("utf-8").splitlines() if line.strip())


def names_for(num_classes: int, stored: Optional[Sequence[str]]) -> list[str]:
    """The class names to show for a model's `num_classes` outputs: the stored ones, ImageNet-1k's for a 1000-class
    model without any, else the class ids ("0", "1", ...)."""
    if stored is not None and len(stored) == num_classes:
        return list(stored)
    if stored is None and num_classes == 1000:
        return list(imagenet_label_names())
    return [str(i) for i in range(num_classes)]
