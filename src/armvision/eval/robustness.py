"""Class handling of ImageNet and its robustness sets (ImageNet-A, -R, -Sketch, V2).

ImageNet-1K class index = position of the WordNet id in the sorted list of the 1000 ILSVRC-2012 wnids (timm's
ImageNetInfo). ImageNet-A and ImageNet-R cover 200 of those classes (Hendrycks et al.; the lists timm ships beside
ImageNetInfo's): a model's 1000 logits are restricted to the 200 mask indices, and the evaluation folder's classes
(sub-folders named by wnid) map to positions inside the mask. Sketch and V2 use all 1000 classes; V2 names its
folders "0".."999", which are class indices, not sorted strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import torch

from ..errors import ConfigError, DataError
from .labels import imagenet_wnids, timm_synsets

DATASETS = ("imagenet", "imagenet-a", "imagenet-r", "imagenet-sketch", "imagenetv2", "folder")
_MASK_FILES = {"imagenet-a": "imagenet_a_synsets.txt", "imagenet-r": "imagenet_r_synsets.txt"}


@lru_cache(maxsize=None)
def wnid_to_index() -> dict[str, int]:
    """WordNet id -> ImageNet-1K class index."""
    return {w: i for i, w in enumerate(imagenet_wnids())}


@lru_cache(maxsize=None)
def subset_wnids(dataset: str) -> tuple[str, ...]:
    """The 200 wnids of ImageNet-A or ImageNet-R, sorted."""
    if dataset not in _MASK_FILES:
        raise ConfigError(f"no 200-class mask for dataset {dataset!r}; masks exist for {', '.join(_MASK_FILES)}")
    return tuple(sorted(timm_synsets(_MASK_FILES[dataset])))


def class_mask(dataset: str) -> torch.Tensor:
    """ImageNet-1K indices (ascending, LongTensor (200,)) of the classes of ImageNet-A or ImageNet-R."""
    index = wnid_to_index()
    return torch.tensor([index[w] for w in subset_wnids(dataset)], dtype=torch.long)


@dataclass
class ClassMap:
    """How a folder's classes meet a model's logits.

    `target_map[folder_class]` is the label to score against; `logit_mask` (or None) selects the logits kept
    (labels are then positions inside the mask).
    """

    target_map: torch.Tensor  # (num_folder_classes,) long
    logit_mask: Optional[torch.Tensor]  # (K,) long, or None for all logits

    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) -> (B, K) logits of the evaluated classes."""
        return logits if self.logit_mask is None else logits[:, self.logit_mask.to(logits.device)]

    def targets(self, folder_targets: torch.Tensor) -> torch.Tensor:
        """Folder class ids (B,) -> labels in the space of `restrict`'s output (B,)."""
        return self.target_map.to(folder_targets.device)[folder_targets]


def _imagenet_indices(classes: Sequence[str], dataset: str, root: str) -> list[int]:
    """Folder class names (wnids or integers) -> ImageNet-1K indices."""
    if all(c.isdigit() for c in classes):
        idx = [int(c) for c in classes]
        bad = [c for c, i in zip(classes, idx) if i >= 1000]
        if bad:
            raise DataError(f"{root}: integer class folders must be 0..999 for {dataset}, got {bad[:3]}")
        return idx
    index = wnid_to_index()
    bad = [c for c in classes if c not in index]
    if bad:
        raise DataError(
            f"{root}: class folders {bad[:3]} are not ImageNet-1K WordNet ids (like n01498041) nor integers "
            f"0..999; name the folders that way, or use --dataset folder"
        )
    return [index[c] for c in classes]


def build_class_map(dataset: str, classes: Sequence[str], num_logits: int, root: str = "data",
                    label_names: Optional[Sequence[str]] = None) -> ClassMap:
    """The class handling of `dataset` for an ImageFolder whose sorted class names are `classes`; `label_names`:
    the model's class names (a folder whose classes are all among them is matched by name)."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if dataset == "folder" and label_names is not None and classes and set(classes) <= set(label_names):
        index = {name: i for i, name in enumerate(label_names)}
        return ClassMap(torch.tensor([index[c] for c in classes], dtype=torch.long), None)
    if dataset == "folder":  # sorted class order, or the integer folder names themselves
        idx = [int(c) for c in classes] if classes and all(c.isdigit() for c in classes) else range(len(classes))
        if max(idx, default=-1) >= num_logits:
            raise DataError(f"{root} has classes up to index {max(idx)} but the model predicts only {num_logits} "
                            f"classes; evaluate a checkpoint trained on these classes")
        return ClassMap(torch.tensor(list(idx), dtype=torch.long), None)
    if num_logits != 1000:
        raise ConfigError(f"--dataset {dataset} needs a 1000-class ImageNet model, this one has {num_logits} "
                          f"outputs; use --dataset folder")
    idx = _imagenet_indices(classes, dataset, root)
    if dataset in _MASK_FILES:
        mask = class_mask(dataset)
        position = {int(m): p for p, m in enumerate(mask)}
        bad = [c for c, i in zip(classes, idx) if i not in position]
        if bad:
            raise DataError(f"{root}: classes {bad[:3]} are not among the 200 classes of {dataset}")
        return ClassMap(torch.tensor([position[i] for i in idx]), mask)
    return ClassMap(torch.tensor(idx), None)
