"""Deployment: export to a torch.export program (.pt2) or ONNX (`armvision export`, `armvision.export`)."""
from .export import FORMATS, ExportResult, export, export_checkpoint, onnx_session

__all__ = ["FORMATS", "ExportResult", "export", "export_checkpoint", "onnx_session"]
