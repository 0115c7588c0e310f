"""Class labels for image files: `armvision predict`, `armvision.predict` and the `Predictor` pipeline object.

    preds = armvision.predict("runs/ft/checkpoint-best.pth", ["cat.jpg", "photos/", "more/*.png"], top_k=3)
    preds[0].labels, preds[0].probabilities            # ["cat", "dog", "fox"], [0.91, 0.06, 0.03]
    classify = armvision.Predictor.load("pets.onnx")   # an exported ONNX file runs in onnxruntime
    classify(["cat.jpg"], top_k=1)

A source is anything `armvision.load_model` reads (a training checkpoint, a save_pretrained folder, a reference
.pth), a Hub id ("hf-hub:owner/name") or an ONNX file written by `armvision export`. Its class names come with it
(`label_names`, see eval/labels.py) and so does its input transform (size, crop, mean and std: preprocess.py); the
images are decoded with the same checks as the training data (pixel limit from the header, 16-bit grey scaled),
in batches, by DataLoader workers. An image that cannot be read is named in a warning and in its result.
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..errors import CheckpointError, DataError
from ..progress import track
from .preprocess import METADATA_KEY, Preprocess, preprocess_of

log = logging.getLogger("armvision.deploy")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
ImageSpec = Union[str, os.PathLike]


@dataclass
class Prediction:
    """The top-k classes of one image, most probable first (`error`: why the image could not be read)."""
    image: str
    labels: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "predictions": [{"label": lb, "index": i, "probability": p} for lb, i, p in
                                                     zip(self.labels, self.indices, self.probabilities)]}


def find_images(specs: Sequence[ImageSpec]) -> list[str]:
    """Image files of `specs`: files as they are, folders searched recursively, globs ("photos/*.jpg",
    "data/**/*.png") expanded; each in sorted order, each file once. A spec that matches nothing is a DataError."""
    out: list[str] = []
    for spec in map(str, specs):
        if os.path.isdir(spec):
            found = sorted(str(p) for p in Path(spec).rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))
            what = f"folder {spec} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
        elif os.path.exists(spec):
            found, what = [spec], ""
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            what = f"no file matches {spec}"
        else:
            found, what = [], f"{spec}: no such file or folder"
        if not found:
            raise DataError(what)
        out += found
    return list(dict.fromkeys(out))


class _Images(Dataset):
    """(image tensor, position, error) of each file; an unreadable file gives a zero image and its error."""

    def __init__(self, paths: Sequence[str], transform: Callable, size: tuple[int, int]):
        self.paths, self.transform, self.size = list(paths), transform, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from ..data.images import load_rgb

        try:
            return self.transform(load_rgb(self.paths[i])), i, ""
        except Exception as e:  # PIL raises many types for bad files
            return torch.zeros(3, *self.size), i, f"{type(e).__name__}: {e}"


class Predictor:
    """A classifier (PyTorch or onnxruntime) with its class names and its input transform."""

    def __init__(self, run: Callable[[Tensor], Tensor], label_names: Sequence[str], preprocess: Preprocess,
                 source: str = "model"):
        self.run, self.label_names, self.preprocess, self.source = run, list(label_names), preprocess, source

    @classmethod
    def load(cls, source: Union[str, os.PathLike], ema: bool = False, device: str = "cpu") -> "Predictor":
        """From a checkpoint file or folder, a Hub id or an exported .onnx file (`ema`: the EMA weights)."""
        if str(source).lower().endswith(".onnx"):
            return cls._from_onnx(str(source))
        return cls._from_checkpoint(source, ema, torch.device(device))

    @classmethod
    def _from_checkpoint(cls, source: Union[str, os.PathLike], ema: bool, device: torch.device) -> "Predictor":
        from ..eval.evaluate import load_model_from
        from ..eval.features import model_kind
        from ..eval.labels import names_for, read_label_names
        from ..models import from_pretrained, read_checkpoint
        from ..models.checkpoint import require_finite
        from ..models.hub import HUB_PREFIX

        key = "model_ema" if ema else "model"
        if str(source).startswith(HUB_PREFIX):
            ckpt, model = None, from_pretrained(str(source), key=key)
        else:
            ckpt = read_checkpoint(source)
            model, _ = load_model_from(ckpt, source, key=key)
        if model_kind(model) != "classifier":
            raise CheckpointError(f"{source} is a {model_kind(model)} checkpoint, not a classifier: finetune it first "
                                  "(armvision finetune) to predict classes")
        require_finite(dict(model.named_parameters()), str(source))  # NaN weights predict nothing
        names = names_for(model.num_classes, read_label_names(source, model))
        model = model.eval().to(device)

        def run(x: Tensor) -> Tensor:
            with torch.no_grad():
                return model(x.to(device)).float().cpu()

        return cls(run, names, preprocess_of(model, ckpt), str(source))

    @classmethod
    def _from_onnx(cls, path: str) -> "Predictor":
        from ..eval.labels import LABEL_NAMES, checked_label_names, names_for, onnx_metadata
        from .export import onnx_session

        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such ONNX file")
        meta = onnx_metadata(path)
        session = onnx_session(path)
        if METADATA_KEY in meta:
            pre = Preprocess.from_json(meta[METADATA_KEY], path)
        else:  # an ONNX file from elsewhere: its input size, ImageNet's normalisation
            h, w = session.get_inputs()[0].shape[2:]
            if not isinstance(h, int) or not isinstance(w, int):
                raise CheckpointError(f"{path} has no {METADATA_KEY} metadata and a dynamic image size: export it "
                                      "with armvision export")
            pre = Preprocess((h, w))
        name = session.get_inputs()[0].name
        classes = session.get_outputs()[0].shape[-1]
        names = checked_label_names(meta.get(LABEL_NAMES), path)
        names = names_for(classes, names) if isinstance(classes, int) else names

        def run(x: Tensor) -> Tensor:
            return torch.from_numpy(session.run(None, {name: x.numpy()})[0]).float()

        return cls(run, names or [], pre, path)

    def __call__(self, images: Sequence[ImageSpec], top_k: int = 5, batch_size: int = 32,
                 num_workers: Optional[int] = 0, progress: bool = False) -> list[Prediction]:
        """Top-k labels and probabilities of each image file (or folder / glob of them), in order."""
        from ..data.loading import resolve_num_workers

        paths = find_images(images)
        data = _Images(paths, self.preprocess.transform(), self.preprocess.img_size)
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=resolve_num_workers(num_workers))
        out: list[Prediction] = []
        for x, idx, errors in track(loader, "predict", enabled=progress):
            probs = torch.softmax(self.run(x), dim=1)  # (B, classes)
            top = probs.topk(min(top_k, probs.shape[1]), dim=1)
            for j, (i, err) in enumerate(zip(idx.tolist(), errors)):
                if err:
                    log.warning("cannot read %s (%s); no prediction for it", paths[i], err)
                    out.append(Prediction(paths[i], error=err))
                    continue
                ks = top.indices[j].tolist()
                out.append(Prediction(paths[i], [self._name(k) for k in ks], ks, top.values[j].tolist()))
        return out

    def _name(self, index: int) -> str:
        return self.label_names[index] if index < len(self.label_names) else str(index)


def predict(source: Union[str, os.PathLike], images: Sequence[ImageSpec], top_k: int = 5, batch_size: int = 32,
            ema: bool = False, device: str = "cpu", num_workers: Optional[int] = 0,
            progress: bool = False) -> list[Prediction]:
    """`Predictor.load(source)(images)`: the top-k class names and probabilities of each image."""
    return Predictor.load(source, ema=ema, device=device)(images, top_k, batch_size, num_workers, progress)


def format_predictions(preds: Sequence[Prediction]) -> str:
    """One line per image: its path, then each class with its probability in percent (or why it was unreadable)."""
    if not preds:
        return "no images"
    k = max((len(p.labels) for p in preds), default=0)
    head = ["image"] + [f"top-{i + 1}" for i in range(k)]
    cells = [[p.image] + [f"{lb} {100 * pr:.1f} %" for lb, pr in zip(p.labels, p.probabilities)] for p in preds]
    widths = [max(len(row[i]) for row in [head] + cells if i < len(row)) for i in range(len(head))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    rows = [line(r) if p.error is None else f"{p.image.ljust(widths[0])}  (unreadable: {p.error})"
            for p, r in zip(preds, cells)]
    return "\n".join([line(head)] + rows)


def predictions_json(preds: Sequence[Prediction]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in preds]


__all__ = ["Prediction", "Predictor", "predict", "find_images", "format_predictions", "predictions_json"]
