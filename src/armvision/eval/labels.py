"""Class names: where they are stored, how they are read back, and ImageNet's (through timm's ImageNetInfo).

A classifier's class names travel as `label_names` (a list of str; position = class id): the top-level key of a
finetuning checkpoint dict, the top-level key of `config.json` in a save_pretrained / convert folder (and a line of
its model card), `model.pretrained_cfg["label_names"]` on a model that armvision's loaders built (`load_model`,
`from_pretrained`: the one reader of checkpoints and folders), and the ONNX metadata (`metadata_props
["label_names"]`, a JSON list). `read_label_names` asks the loaders, or reads an ONNX file's metadata; `names_for`
falls back to ImageNet-1k's names for a 1000-class model without stored names and to the class ids otherwise.
"""
from __future__ import annotations

import functools
import json
import os
import pkgutil
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


def label_names_of(model: Any) -> Optional[list[str]]:
    """The class names armvision's loaders (`load_model`, `from_pretrained`, models/checkpoint.py) found with a model
    and put into its `pretrained_cfg["label_names"]`, or None."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get(LABEL_NAMES)
    return list(names) if names is not None else None


def read_label_names(source: Source, model: Any = None) -> Optional[list[str]]:
    """Class names stored with a model, or None. An ONNX file: its metadata. Anything else (a checkpoint file or
    dict, a save_pretrained folder, a Hub id "hf-hub:owner/name"): what the loaders read, `label_names_of(model)` for
    the `model` already loaded from `source`, else for the model `from_pretrained(source)` builds."""
    if model is not None:
        return label_names_of(model)
    if not isinstance(source, Mapping) and str(source).lower().endswith(".onnx"):
        return checked_label_names(onnx_metadata(source).get(LABEL_NAMES), str(source))
    from ..models import from_pretrained

    return label_names_of(from_pretrained(source))


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
