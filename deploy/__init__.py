"""deploy: export a steering model (SavedModel, ONNX, TFLite fp32/fp16/int8, TensorRT, a donkeycar pilot), check
parity on every output, load any artifact as one predictor, measure latency and serve it to the Udacity simulator.

Example:
    >>> from deploy import export, load_predictor
    >>> print(export("runs/a/best.keras", "onnx", "pilotnet.onnx").summary())
    >>> steering = load_predictor("pilotnet.onnx")(frames)  # uint8 (B, H, W, 3) -> float32 (B,)
    >>> load_predictor("pilotnet.onnx").predict_outputs(frames)  # {"steering": (B,), "throttle": (B,)}
"""

from __future__ import annotations

from deploy.export import ExportError, ExportReport, export
from deploy.formats import FORMATS, ExportFormat
from deploy.parity import ParityFrames
from deploy.predictor import Predictor, load_predictor

__all__ = ["FORMATS", "ExportError", "ExportFormat", "ExportReport", "ParityFrames", "Predictor", "export",
           "load_predictor"]
