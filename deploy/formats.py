"""The one table of export formats: it drives ``deploy.export``, ``load_predictor`` and ``--help``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportFormat:
    """One export target.

    Args:
        name: the ``--format`` value.
        suffix: the artifact's file suffix ("" for a directory).
        needs: the Python package (or data) the export needs beyond TensorFlow.
        gpu: whether building or running the artifact needs an NVIDIA GPU.
        tolerance: the max abs steering difference to Keras that passes parity
            (``None``: reported, not enforced, e.g. int8 where the RMSE change is reported).
        description: one line for ``--help``.
    """

    name: str
    suffix: str
    needs: str
    gpu: bool
    tolerance: float | None
    description: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("saved_model", "", "tensorflow", False, 1e-4, "TensorFlow SavedModel directory (model.export)"),
        ExportFormat("onnx", ".onnx", "tf2onnx, onnxruntime", False, 1e-4,
                     "ONNX, uint8 input, dynamic batch, standard ops only"),
        ExportFormat("tflite", ".tflite", "ai-edge-litert (runtime)", False, 1e-4, "TensorFlow Lite float32"),
        ExportFormat("tflite-fp16", ".tflite", "ai-edge-litert (runtime)", False, 1e-2,
                     "TensorFlow Lite with float16 weights"),
        ExportFormat("tflite-int8", ".tflite", "calibration frames", False, None,
                     "TensorFlow Lite int8 (representative dataset from --calibration)"),
        ExportFormat("tensorrt", ".plan", "tensorrt + NVIDIA GPU", True, 1e-2,
                     "TensorRT engine from a float32-input ONNX; without TensorRT: static check + trtexec command"),
        ExportFormat("donkeycar", ".tflite", "donkeycar (on the car)", False, 1e-4,
                     "donkeycar KerasLinear pilot (TFLite: img_in = frame/255 -> n_outputs0 angle, n_outputs1 "
                     "throttle; a steering-only model gets a constant --throttle)"),
    )
}

# Suffix -> runtime, for loading an artifact whose format is not given.
RUNTIME_BY_SUFFIX = {".keras": "keras", ".onnx": "onnxruntime", ".tflite": "litert", ".plan": "tensorrt",
                     ".engine": "tensorrt", ".trt": "tensorrt"}


def get_format(name: str) -> ExportFormat:
    """The format called ``name``; a ValueError listing the known ones otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown export format {name!r}; expected one of: {', '.join(FORMATS)}") from None


def formats_help() -> str:
    """The table as text, for ``e2e-drive export --help``."""
    lines = ["formats:", f"  {'name':<12} {'suffix':<8} {'GPU':<4} {'parity tol':<10} needs / what"]
    for f in FORMATS.values():
        tol = "RMSE" if f.tolerance is None else f"{f.tolerance:g}"
        lines.append(f"  {f.name:<12} {f.suffix or '(dir)':<8} {'yes' if f.gpu else 'no':<4} {tol:<10} "
                     f"{f.needs}: {f.description}")
    return "\n".join(lines)
