"""`armvision visualize --checkpoint CKPT`: what an ARM pretrainer sees, predicts and gets wrong, one PNG per image.

Each PNG is one row of five panels:
  1. the input (resized and center-cropped to the model's image size);
  2. the input with the cluster grid and each cluster's place in the prediction order;
  3. the ground truth: the first cluster is given (green frame), clusters 2..n are the targets;
  4. the prediction: the first cluster copied from the input (it is never predicted) and the predicted patches of
     clusters 2..n; with the "norm_pixel" target each predicted patch is un-normalised with the mean and
     standard deviation of its own ground-truth patch, as MAE's demo does;
  5. a heat map of the loss per cluster (mean over its patches), with a colour bar.
Without --images the first --num-images pictures of the embedded digits validation split are used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..errors import CheckpointError, DataError

PANELS = ("input", "cluster order", "ground truth", "prediction", "loss per cluster")


@dataclass
class VisualizeResult:
    paths: list[Path]  # one PNG per image
    panels: int  # panels per PNG (one row)
    losses: list[float]  # mean loss of each image


def reconstruct(model: torch.nn.Module, imgs: Tensor, pred: Tensor) -> Tensor:
    """Images (B, C, H, W) with clusters 2..n replaced by the predictions in pixel space.

    pred (B, T, p*p*C) is in sequence order. For target "norm_pixel" each predicted patch is mapped back with the
    mean and (unbiased) standard deviation of the true patch at that place, the inverse of the target's
    normalisation; for "pixel" it is used as is. The first cluster keeps the input's pixels.
    """
    patches = model.patchify(imgs)  # (B, N, P) raster order
    idx = model.token_order[model.tokens_per_cluster :].to(imgs.device)  # (T,) raster index of each target
    pix = pred.to(patches.dtype)
    if model.config.target == "norm_pixel":
        true = patches[:, idx]  # (B, T, P)
        mean, var = true.mean(-1, keepdim=True), true.var(-1, keepdim=True)
        pix = pix * (var + 1e-6) ** 0.5 + mean
    out = patches.clone()
    out[:, idx] = pix
    return model.unpatchify(out)


def cluster_loss_map(model: torch.nn.Module, loss_per_patch: Tensor) -> Tensor:
    """(B, T) per-patch loss -> (B, ch, cw) mean loss of each cluster on the cluster grid; NaN for the first one."""
    b = loss_per_patch.shape[0]
    per_cluster = loss_per_patch.reshape(b, model.num_clusters - 1, model.tokens_per_cluster).mean(-1)  # (B, n-1)
    ch, cw = model.cluster_grid
    grid = torch.full((b, ch * cw), float("nan"), dtype=per_cluster.dtype, device=per_cluster.device)
    grid[:, model.cluster_order[1:].to(grid.device)] = per_cluster
    return grid.reshape(b, ch, cw)


def _to_rgb(img: Tensor, mean: Sequence[float], std: Sequence[float]):
    """Normalised (C, H, W) -> (H, W, C) numpy array in [0, 1] for imshow."""
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    return (img.detach().float().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()


def _draw_grid(ax, model, h: int, w: int, numbers: bool, first_frame: bool) -> None:
    """Cluster boundaries, optional order numbers, optional green frame around the given first cluster."""
    from matplotlib.patches import Rectangle

    p, k = model.patch_size, model.cluster_size
    ch, cw = model.cluster_grid
    side_h, side_w = h / ch, w / cw
    for r in range(1, ch):
        ax.axhline(r * side_h - 0.5, color="white", linewidth=1.2, alpha=0.9)
    for c in range(1, cw):
        ax.axvline(c * side_w - 0.5, color="white", linewidth=1.2, alpha=0.9)
    if numbers:
        for j in range(1, ch * k):  # faint patch grid
            ax.axhline(j * p - 0.5, color="white", linewidth=0.4, alpha=0.35)
        for j in range(1, cw * k):
            ax.axvline(j * p - 0.5, color="white", linewidth=0.4, alpha=0.35)
        for pos, c in enumerate(model.cluster_order.tolist(), start=1):
            cy, cx = (c // cw + 0.5) * side_h, (c % cw + 0.5) * side_w
            ax.text(cx, cy, str(pos), ha="center", va="center", fontsize=min(14, 80 / max(ch, cw) + 4),
                    fontweight="bold", color="yellow" if pos > 1 else "lime",
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="black", alpha=0.55, linewidth=0))
    if first_frame:
        c = int(model.cluster_order[0])
        ax.add_patch(Rectangle(((c % cw) * side_w - 0.5, (c // cw) * side_h - 0.5), side_w, side_h, fill=False,
                               edgecolor="lime", linewidth=2.5))


def draw(model, img: Tensor, recon: Tensor, loss_grid: Tensor, title: str, path: Path,
         mean: Sequence[float], std: Sequence[float]) -> int:
    """Write one row of panels for one image; returns the number of panels drawn."""
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rgb, rec = _to_rgb(img, mean, std), _to_rgb(recon, mean, std)
    h, w = rgb.shape[:2]
    fig = Figure(figsize=(3.2 * len(PANELS) + 0.6, 3.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS))
    for ax, name in zip(axes, PANELS):
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].imshow(rgb)
    axes[1].imshow(rgb)
    _draw_grid(axes[1], model, h, w, numbers=True, first_frame=False)
    axes[2].imshow(rgb)
    _draw_grid(axes[2], model, h, w, numbers=False, first_frame=True)
    axes[2].set_xlabel("green: given (cluster 1); others: targets", fontsize=8)
    axes[3].imshow(rec)
    _draw_grid(axes[3], model, h, w, numbers=False, first_frame=True)
    axes[3].set_xlabel("cluster 1 from the input, the rest predicted", fontsize=8)
    grid = loss_grid.detach().float().cpu().numpy()
    cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.75")
    im = axes[4].imshow(np.ma.masked_invalid(grid), cmap=cmap, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ch, cw = grid.shape
    for r in range(ch):
        for c in range(cw):
            v = grid[r, c]
            label = "given" if np.isnan(v) else f"{v:.2f}"
            axes[4].text((c + 0.5) * w / cw - 0.5, (r + 0.5) * h / ch - 0.5, label, ha="center", va="center",
                         fontsize=min(9, 60 / max(ch, cw) + 2),
                         color="black" if np.isnan(v) or im.norm(v) > 0.6 else "white")
    fig.colorbar(im, ax=axes[4], fraction=0.046, pad=0.04, label="MSE")
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, metadata={"Description": f"armvision visualize: {len(PANELS)} panels: "
                                                       + ", ".join(PANELS)})
    return len(PANELS)


@torch.no_grad()
def visualize(model, imgs: Tensor, names: Sequence[str], out_dir: str | Path,
              mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
              ) -> VisualizeResult:
    """Run the pretrainer on normalised images (B, C, H, W) and write one PNG per image into out_dir."""
    model.eval()
    out = model(imgs)
    recon = reconstruct(model, imgs, out.pred)  # (B, C, H, W)
    grids = cluster_loss_map(model, out.loss_per_patch)  # (B, ch, cw)
    losses = out.loss_per_patch.float().mean(-1).tolist()
    paths, panels = [], 0
    for i, name in enumerate(names):
        path = Path(out_dir) / f"{i:02d}_{Path(name).stem or 'image'}.png"
        title = f"{name}: loss {losses[i]:.3f} ({model.config.target}, {model.num_clusters} clusters, " \
                f"{model.config.ordering} order)"
        panels = draw(model, imgs[i], recon[i], grids[i], title, path, mean, std)
        paths.append(path)
    return VisualizeResult(paths, panels, losses)


def load_images(paths: Sequence[str], img_size: int) -> tuple[Tensor, list[str]]:
    """Files -> normalised (B, 3, S, S): short side resized to S (bicubic), center-cropped, ImageNet mean/std."""
    from PIL import Image, UnidentifiedImageError

    from ..data import eval_transform

    tf = eval_transform(img_size, crop_pct=1.0)
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append(tf(im.convert("RGB")))
        except FileNotFoundError:
            raise DataError(f"--images: {p} does not exist") from None
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"--images: {p} is not a readable image ({e.__class__.__name__}); "
                            "pass PNG/JPEG files") from None
    return torch.stack(out), [str(p) for p in paths]


def embedded_images(n: int, img_size: int) -> tuple[Tensor, list[str]]:
    """The first n images of the embedded digits validation split, normalised like `load_images`."""
    from ..data import embedded_digits, eval_transform

    ds = embedded_digits("val", img_size=img_size, transform=eval_transform(img_size, crop_pct=1.0))
    n = min(n, len(ds))
    items = [ds[i] for i in range(n)]
    return torch.stack([x for x, _ in items]), [f"digits_val_{i}_label{y}" for i, (_, y) in enumerate(items)]


def load_pretrainer(checkpoint: str, size: Optional[str] = None, key: str = "model"):
    """A pretrainer from our checkpoint dict, a save_pretrained directory, or a reference .pth (`size` builds that
    registry size and loads the weights into it)."""
    from ..models import create_pretrainer, infer_config, load_checkpoint, load_model, read_checkpoint, select_state_dict

    if size is not None:
        sd = select_state_dict(read_checkpoint(checkpoint), key, checkpoint)
        model = create_pretrainer(size, **{k: v for k, v in infer_config(sd).items() if k == "img_size"})
        load_checkpoint(model, {key: sd}, key=key)
    else:
        model, _ = load_model(checkpoint, key=key)
    if getattr(model.config, "kind", None) != "pretrainer":
        raise CheckpointError(f"{checkpoint} holds a {model.config.kind} model; visualize needs an ARM pretraining "
                              "checkpoint (pretrain's checkpoint.pth, a save_pretrained directory, or a reference "
                              "pretraining .pth)")
    return model


def visualize_checkpoint(checkpoint: str, out_dir: str | Path, size: Optional[str] = None, key: str = "model",
                         images: Optional[Sequence[str]] = None, num_images: int = 4,
                         device: str = "cpu") -> VisualizeResult:
    """Draw `images` (files; default: `num_images` embedded digits) through the pretrainer in `checkpoint`."""
    model = load_pretrainer(checkpoint, size, key).to(device)
    h, w = model.config.img_size
    if h != w:
        raise DataError(f"visualize supports square models; this one is {h}x{w}")
    imgs, names = load_images(images, h) if images else embedded_images(num_images, h)
    return visualize(model, imgs.to(device), names, out_dir)
