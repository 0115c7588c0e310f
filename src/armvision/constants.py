"""Numbers several layers share, defined once: ImageNet normalisation and the evaluation center-crop fraction."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875  # eval: resize to img_size / crop_pct (224 -> 256), then center-crop img_size
