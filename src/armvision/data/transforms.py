"""The reference's transforms: pretraining, finetuning (timm RandAugment + random erasing) and evaluation; and the
contrastive baseline's two SimCLR views (`TwoViews` over `contrastive_transform`)."""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from PIL import Image, ImageOps
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from ..constants import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from ..fields import as_hw

ImgSize = int | Sequence[int]  # one number, or (height, width): fields.as_hw


def pretrain_transform(
    img_size: ImgSize,
    min_scale: float = 0.2,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable:
    """RandomResizedCrop(scale min_scale..1, bicubic) + horizontal flip + normalize (reference pretraining)."""
    return T.Compose([
        T.RandomResizedCrop(as_hw(img_size), scale=(min_scale, 1.0), interpolation=InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def contrastive_transform(
    img_size: ImgSize,
    min_scale: float = 0.08,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable:
    """One SimCLR view: RandomResizedCrop(scale min_scale..1), flip, colour jitter (0.4, 0.4, 0.4, 0.1; p 0.8),
    grayscale (p 0.2), Gaussian blur (p 0.5), normalize. The blur is scaled to the image as in SimCLR: kernel ~10 %
    of the side (odd, >= 3), sigma in [0.1, 2.0] px at 224 px and proportionally less for smaller images."""
    size = max(as_hw(img_size))
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
    scale = size / 224.0
    return T.Compose([
        T.RandomResizedCrop(as_hw(img_size), scale=(min_scale, 1.0), interpolation=InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1 * scale, 2.0 * scale))], p=0.5),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


class TwoViews:
    """Dataset transform giving two independent draws of `transform` for one image, stacked: (2, C, H, W). A batch
    of them is (B, 2, C, H, W), what a contrastive pretrainer takes."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, img) -> torch.Tensor:
        return torch.stack([self.transform(img), self.transform(img)])

    def __repr__(self) -> str:
        return f"TwoViews({self.transform!r})"


def finetune_transform(
    img_size: ImgSize,
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1",
    reprob: float = 0.25,
    color_jitter: Optional[float] = None,
    min_scale: float = 0.08,
    hflip: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable:
    """timm's training transform: RandomResizedCrop(scale min_scale..1), flip, RandAugment, normalize, and
    random erasing (pixel mode)."""
    from timm.data import create_transform

    tf = create_transform(
        input_size=as_hw(img_size),
        is_training=True,
        scale=(min_scale, 1.0),
        hflip=hflip,
        color_jitter=color_jitter,
        auto_augment=auto_augment or None,
        interpolation="bicubic",
        re_prob=reprob,
        re_mode="pixel",
        re_count=1,
        mean=tuple(mean),
        std=tuple(std),
    )
    _fix_posterize(tf)
    return tf


def _posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, keeping Pillow < 13's behaviour for 0 bits (a black image) that Pillow 13 rejects.

    RandAugment 'inc1' at magnitude 10 (reached with mstd 0.5 around m9) asks for 0 bits.
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def _fix_posterize(transform: Callable) -> None:
    """Swap the posterize op of every RandAugment inside `transform` for the Pillow-13-safe one."""
    from timm.data import auto_augment

    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):
            if getattr(op, "aug_fn", None) is auto_augment.posterize:
                op.aug_fn = _posterize


def eval_transform(
    img_size: ImgSize,
    crop_pct: float = DEFAULT_CROP_PCT,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable:
    """Resize to img_size / crop_pct (bicubic; a square size: the short side), center-crop img_size, normalize
    (224 -> 256 -> 224)."""
    h, w = as_hw(img_size)
    scaled = (int(math.floor(h / crop_pct)), int(math.floor(w / crop_pct))) if crop_pct < 1.0 else (h, w)
    return T.Compose([
        T.Resize(scaled[0] if h == w else scaled, interpolation=InterpolationMode.BICUBIC),
        T.CenterCrop((h, w)),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
