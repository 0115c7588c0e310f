"""Export a classifier (logits) or a pretrained encoder (features) to a torch.export program (.pt2) or to ONNX.

    import armvision
    res = armvision.export(model, "arm_b.onnx")                     # format from the suffix: .pt2 or .onnx
    res = armvision.export(pretrainer, "enc.pt2", dynamic_size=False) # a pretrainer: its encoder features
    print(res.max_diff)                                             # exported vs eager on random inputs

.pt2: `torch.export` of the model as it runs in eager mode; the selective scan stays one custom op
(`armvision::selective_scan_directions_fwd` on CPU), so loading the program needs `import armvision` first
(`torch.export.load(path).module()(x)`), and it runs the fused CPU kernel (bitwise the eager outputs).
ONNX: the scan is lowered to standard ONNX ops (scan_decomposed.py: one ONNX `Scan` over time per layer), so the
file runs in onnxruntime or any ONNX runtime without armvision.

Inputs: (batch, C, H, W) float32 images named "images"; batch is dynamic. With dynamic_size (classifiers only: the
pretrainers' sin-cos tables and cluster layout fix their size) H and W may be any multiples of the patch size.
Outputs: "logits" (batch, classes) for a classifier, "features" (batch, tokens, D) with features=True or a
pretrainer (forward_features: the timm token layout).
An ONNX file also carries, in its metadata_props, the class names (`label_names`, a JSON list; index = class id)
and the model's input transform (`armvision_preprocess`: size, crop, mean, std), so `armvision predict` and any
onnxruntime user can label its outputs without armvision's checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..eval.labels import LABEL_NAMES
from ..fields import as_hw
from .preprocess import METADATA_KEY, Preprocess, preprocess_of

MIN_OPSET = 18  # torch.onnx's torch.export-based exporter writes this opset and newer ones

log = logging.getLogger("armvision.deploy")
FORMATS = ("pt2", "onnx")
SUFFIXES = {".pt2": "pt2", ".onnx": "onnx"}


@dataclass
class ExportResult:
    path: Path
    format: str
    output: str  # "logits" or "features"
    input_shape: Tuple[int, int, int, int]  # the example input traced
    dynamic_size: bool
    max_diff: Optional[float] = None  # max |exported - eager| over the checked inputs (None: not checked)
    checked_shapes: List[Tuple[int, ...]] = field(default_factory=list)

    def __str__(self) -> str:
        dims = "dynamic batch" + (", dynamic image size" if self.dynamic_size else "")
        s = f"wrote {self.format} ({self.output}, {dims}) to {self.path}"
        if self.max_diff is not None:
            shapes = ", ".join("x".join(map(str, t)) for t in self.checked_shapes)
            s += f"\nmax |exported - eager| = {self.max_diff:.3g} on random inputs {shapes}"
        return s


class _Features(nn.Module):
    """model.forward_features as a module's forward (what the exporters trace)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.forward_features(images)


def _kind(model: nn.Module) -> str:
    from ..models import ARMClassifier
    from ..models.backbone import MambaBackbone

    if isinstance(model, ARMClassifier):
        return "classifier"
    if isinstance(model, MambaBackbone):  # ARM, MAE or contrastive pretrainer: its encoder's features
        return "pretrainer"
    raise ConfigError(f"export takes an armvision classifier or pretrainer, got {type(model).__name__}")


def resolve_format(path: Union[str, os.PathLike], format: Optional[str]) -> str:
    """The format asked for, or the one the file suffix names."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"cannot tell the export format from {str(path)!r}: name the file *.pt2 or *.onnx, or "
                          f"pass the format ({', '.join(FORMATS)})")
    return SUFFIXES[suffix]


def _dynamic_shapes(model: nn.Module, dynamic_size: bool):
    from torch.export import Dim

    dims = {0: Dim("batch", min=1, max=4096)}
    if dynamic_size:
        ph, pw = model.patch_embed.patch_size
        dims[2] = ph * Dim("grid_h", min=1, max=512)
        dims[3] = pw * Dim("grid_w", min=1, max=512)
    return (dims,)


def check_inputs(model: nn.Module, example: Tensor, dynamic_size: bool, seed: int = 0) -> List[Tensor]:
    """Random inputs to compare on: other batch sizes than the traced one, and other image sizes if dynamic."""
    g = torch.Generator().manual_seed(seed)
    _, c, h, w = example.shape
    shapes = [(1, c, h, w), (3, c, h, w)]
    if dynamic_size:
        ph, pw = model.patch_embed.patch_size
        shapes.append((2, c, h + ph, w + 2 * pw))
    return [torch.randn(s, generator=g) for s in shapes]


def export(model: nn.Module, path: Union[str, os.PathLike], format: Optional[str] = None, *,
           features: bool = False, img_size: Optional[Union[int, Sequence[int]]] = None, dynamic_size: bool = False,
           batch: int = 2, check: bool = True, opset: Optional[int] = None,
           label_names: Optional[Sequence[str]] = None, preprocess: Optional[Preprocess] = None) -> ExportResult:
    """Export `model` (eval mode, float32, CPU) to `path` (.pt2: torch.export; .onnx: ONNX) and, with check=True,
    compare the exported program with eager on random inputs (`ExportResult.max_diff`).

    A classifier exports its logits (features=True: its forward_features tokens), a pretrainer its encoder
    features. The batch is dynamic; dynamic_size=True makes H and W dynamic too (classifiers only). img_size: the
    size of the traced example (default: the model's). opset: ONNX opset (default: the exporter's).
    label_names (default: the model's pretrained_cfg["label_names"] if any) and preprocess (default: the model's
    size with ImageNet's normalisation) go into the ONNX metadata.
    """
    fmt = resolve_format(path, format)
    kind = _kind(model)
    if kind == "pretrainer":
        features = True
        if dynamic_size:
            raise ConfigError(f"{type(model).__name__} takes only its own image size (fixed sin-cos position tables "
                              f"and cluster layout): export it without a dynamic image size")
    if batch < 2:
        raise ConfigError(f"the example batch must be >= 2 (a batch of 1 would be traced as a constant), got {batch}")
    model = model.eval().float().cpu()
    module = _Features(model) if features else model
    h, w = model.patch_embed.img_size if img_size is None else as_hw(img_size)
    example = torch.randn(batch, model.patch_embed.in_chans, h, w, generator=torch.Generator().manual_seed(0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dyn = _dynamic_shapes(model, dynamic_size)
    output = "features" if features else "logits"
    with torch.no_grad():
        if fmt == "pt2":
            program = torch.export.export(module, (example,), dynamic_shapes=dyn)
            torch.export.save(program, str(path))
            run = _pt2_runner(path)
        else:
            if label_names is None:
                label_names = (getattr(model, "pretrained_cfg", None) or {}).get(LABEL_NAMES)
            meta = {METADATA_KEY: (preprocess or preprocess_of(model)).to_json()}
            if label_names is not None and not features:
                meta[LABEL_NAMES] = json.dumps([str(n) for n in label_names])
            _export_onnx(module, example, dyn, path, output, opset, meta)
            run = _onnx_runner(path)
    res = ExportResult(path, fmt, output, tuple(example.shape), dynamic_size)
    if check:
        diffs = []
        with torch.no_grad():
            for x in check_inputs(model, example, dynamic_size):
                want = module(x)
                got = run(x)
                diffs.append(float((got.float() - want.float()).abs().max()))
                res.checked_shapes.append(tuple(x.shape))
        res.max_diff = max(diffs)
    return res


def _export_onnx(module: nn.Module, example: Tensor, dyn, path: Path, output: str, opset: Optional[int],
                 metadata: dict[str, str]) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing): "
                          f"pip install 'armvision[export]'") from None
    from ..ops.scan_decomposed import decomposed_scan

    kwargs = {} if opset is None else {"opset_version": check_opset(opset)}
    with decomposed_scan():  # torch.export first (its dynamic shapes hold), then the ONNX translation of that
        program = torch.export.export(module, (example,), dynamic_shapes=dyn)
    onnx_program = torch.onnx.export(program, (example,), dynamo=True, input_names=["images"], output_names=[output],
                                     verbose=False, **kwargs)
    onnx_program.model.metadata_props.update(metadata)
    written = max(o.version for o in onnx_program.model_proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:  # the exporter falls back to its own opset when it cannot convert
        raise ConfigError(f"--opset {opset}: the exporter could only write opset {written} for this model; choose "
                          f"{written} or leave --opset out")
    onnx_program.save(str(path))


def check_opset(opset: int) -> int:
    """`opset` if the ONNX exporter can write it (18, where torch.export-based export starts, up to the newest that
    the installed onnx knows); else ConfigError naming the range."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(f"--opset {opset}: the ONNX exporter writes opsets {MIN_OPSET} to {newest}")
    return opset


def _pt2_runner(path: Path):
    module = torch.export.load(str(path)).module()
    return lambda x: module(x)


def onnx_session(path: Union[str, os.PathLike], threads: Optional[int] = None):
    """An onnxruntime CPU session for an exported file (threads: intra-op threads, default onnxruntime's)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("checking or running an ONNX export needs onnxruntime: pip install 'armvision[export]'") \
            from None
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _onnx_runner(path: Path):
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def export_checkpoint(checkpoint: Union[str, os.PathLike], path: Union[str, os.PathLike],
                      format: Optional[str] = None, *, features: bool = False, ema: bool = False,
                      **kwargs) -> ExportResult:
    """`export` of the model in `checkpoint` (any file or folder `armvision.load_model` reads; `ema`: its EMA
    weights). A pretrainer needs features=True. kwargs: those of `export` (img_size, dynamic_size, batch, check,
    opset). The class names the loader found (the model's pretrained_cfg["label_names"]) and the checkpoint's input
    transform go into ONNX metadata."""
    from ..eval.evaluate import load_model_from
    from ..models import ARMClassifier, read_checkpoint
    from ..models.checkpoint import require_finite

    fmt = resolve_format(path, format)  # before reading a checkpoint of gigabytes
    batch = kwargs.get("batch", 2)
    if batch < 2:
        raise ConfigError(f"--batch-size {batch}: the traced batch must be >= 2 (1 would be traced as a constant)")
    ckpt = read_checkpoint(checkpoint)
    model, _ = load_model_from(ckpt, checkpoint, key="model_ema" if ema else "model")
    require_finite(dict(model.named_parameters()), str(checkpoint))  # NaN weights export a model that predicts NaN
    kwargs.setdefault("preprocess", preprocess_of(model, ckpt))
    if not isinstance(model, ARMClassifier) and not features:
        raise ConfigError(f"{checkpoint} holds a pretrainer ({type(model).__name__}), not a classifier: pass "
                          f"--features to export its encoder features, or finetune it first (armvision finetune)")
    return export(model, path, fmt, features=features, **kwargs)
