"""Deployment: export to a torch.export program (.pt2) or ONNX (`armvision export`, `armvision.export`), and class
labels for image files (`armvision predict`, `armvision.predict`, `armvision.Predictor`)."""
from .export import FORMATS, ExportResult, export, export_checkpoint, onnx_session
from .predict import Prediction, Predictor, find_images, predict

__all__ = ["FORMATS", "ExportResult", "export", "export_checkpoint", "onnx_session", "Prediction", "Predictor",
           "find_images", "predict"]
