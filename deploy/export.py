"""``deploy.export``: a Keras model to SavedModel, ONNX, TFLite (fp32/fp16/int8), TensorRT or a donkeycar pilot,
with a parity report.

Every artifact is written to a temporary path beside ``out``, loaded back and checked against Keras there, and
only then moved into place (``data_tools.io.atomic_path`` / ``atomic_directory``): a failed export, at any step,
leaves the previous artifact byte-identical and no temporary file behind. Arguments are checked before any work.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy.formats import ExportError, ExportFormat, ExportJob, get_format
from deploy.formats.donkeycar import DEFAULT_THROTTLE
from deploy.formats.onnx import DEFAULT_OPSET, ONNX_OPSETS, export_onnx_proto
from deploy.formats.serving import model_outputs
from deploy.parity import ParityFrames, ParityResult, as_parity_frames, compare, load_frames

log = logging.getLogger(__name__)

TRT_PRECISIONS = ("fp32", "fp16", "int8")
__all__ = ["DEFAULT_OPSET", "DEFAULT_THROTTLE", "ONNX_OPSETS", "TRT_PRECISIONS", "ExportError", "ExportReport",
           "export", "export_onnx_proto"]


@dataclass
class ExportReport:
    """What an export wrote and how close it stays to Keras."""

    format: str
    model: str
    path: str
    size_bytes: int
    ops: dict[str, int]
    parity: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)
    tensorrt: dict[str, Any] | None = None
    outputs: list[str] = field(default_factory=lambda: ["steering"])
    written: bool = True  # False: parity failed and the artifact was not moved into place

    @property
    def passed(self) -> bool:
        return bool(self.parity.get("passed", False)) and self.written

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "model": self.model, "path": self.path, "size_bytes": self.size_bytes,
                "ops": self.ops, "parity": self.parity, "passed": self.passed, "written": self.written,
                "outputs": self.outputs, "seconds": self.seconds, "notes": self.notes, "tensorrt": self.tensorrt}

    def summary(self) -> str:
        """The human-readable parity report."""
        p = self.parity
        verb = "exported" if self.written else "NOT written (parity failed; the previous file is unchanged):"
        lines = [f"{verb} {self.model} -> {self.path} ({self.format}, {self.size_bytes / 1e6:.2f} MB, "
                 f"{self.seconds:.1f} s)",
                 f"parity vs Keras on {p['frames']} frames ({p['source']}): max abs diff {p['max_abs_diff']:.3g}, "
                 f"mean {p['mean_abs_diff']:.3g}, tolerance {p['tolerance'] if p['tolerance'] is not None else 'n/a'}"
                 f" -> {'PASS' if p.get('passed') else 'FAIL'}"]
        if len(p.get("outputs", {})) > 1:
            lines.append("per output: " + ", ".join(f"{name} max {o['max_abs_diff']:.3g}"
                                                    for name, o in p["outputs"].items()))
        if p.get("rmse_change") is not None:
            lines.append(f"steering RMSE vs recorded labels: Keras {p['keras_rmse']:.4f}, artifact {p['artifact_rmse']:.4f}"
                         f" (change {p['rmse_change']:+.4f})")
        lines.append("ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1])))
        if self.tensorrt is not None:
            check = self.tensorrt
            lines.append(f"TensorRT static check ({check['source']}): {'OK' if check['ok'] else 'FAILED'}; "
                         f"inputs {check['inputs']}")
            lines += [f"  problem: {problem}" for problem in check["problems"]]
            lines.append(f"build on the target (TensorRT 10): {check['trtexec']}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


@dataclass
class _Verified:
    """What the check of the artifact written found: its size and its parity with the Keras model."""

    size: int = 0
    parity: Any = None


class _ParityFailed(Exception):
    """Raised from an atomic write's verify step: the artifact loads but does not match Keras."""

    def __init__(self, parity: ParityResult):
        super().__init__("parity failed")
        self.parity = parity


def _check_arguments(spec: ExportFormat, out: str, parity_frames: Any, opset: Any, trt_precision: Any,
                     throttle: Any, seed: Any) -> None:
    """Every argument, before any work: a bad one never costs a conversion, nor touches ``out``."""
    if spec.suffix and os.path.isdir(out):
        raise ValueError(f"--out {out}: is a folder; give the artifact's file name, e.g. "
                         f"{os.path.join(out, 'pilotnet' + spec.suffix)}")
    if spec.suffix and not out.endswith(spec.suffix):
        raise ValueError(f"--out {out}: the {spec.name} artifact's name should end with {spec.suffix}")
    if not spec.suffix and os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: exists and is a file; a {spec.name} artifact is a folder")
    if spec.suffix and os.path.isdir(out):
        raise ValueError(f"--out {out}: is a folder; expected a {spec.suffix} file path")
    if isinstance(parity_frames, bool) or not isinstance(parity_frames, numbers.Integral) or parity_frames < 1:
        raise ValueError(f"--frames: expected an integer >= 1. Received: {parity_frames!r}")
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral) or \
            not ONNX_OPSETS[0] <= opset <= ONNX_OPSETS[1]:
        raise ValueError(f"--opset: expected an ONNX opset in {ONNX_OPSETS[0]}..{ONNX_OPSETS[1]} (what tf2onnx "
                         f"writes and our graphs need). Received: {opset!r}")
    if trt_precision not in TRT_PRECISIONS:
        raise ValueError(f"--precision: expected one of {', '.join(TRT_PRECISIONS)}. Received: {trt_precision!r}")
    if isinstance(throttle, bool) or not isinstance(throttle, numbers.Real) or not math.isfinite(throttle) or \
            not -1.0 <= throttle <= 1.0:
        raise ValueError(f"--throttle: expected a finite number in [-1, 1]. Received: {throttle!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0. Received: {seed!r}")


def export(model_path: Any, format: str, out: str | os.PathLike, *, frames: Any = None, calibration: Any = None,
           opset: int = DEFAULT_OPSET, parity_frames: int = 32, trt_precision: str = "fp16", seed: int = 0,
           fold: bool = True, throttle: float = DEFAULT_THROTTLE) -> ExportReport:
    """Export a .keras model (raw uint8 RGB frames in, steering [and throttle] out) and check it against Keras.

    The artifact is written to a temporary path, loaded back and compared with Keras on every output; only
    when that holds is it moved to ``out``. On any failure the previous ``out`` stays byte-identical.

    Args:
        model_path: the .keras file (or an in-memory keras.Model).
        format: a name from ``deploy.formats.FORMATS``.
        out: the artifact to write (a directory for saved_model).
        frames: the parity frames: a uint8 array (N, H, W, 3) or ``deploy.parity.ParityFrames`` (resized to
            the model's frames if needed). Defaults to ``parity_frames`` frames drawn from ``calibration``.
        calibration: a Udacity log / tub / image folder / DrivingLog for parity and int8 calibration;
            default simulator frames (``e2e_drive.sim.sample_frames``).
        opset: the ONNX opset (onnx and tensorrt), in ``ONNX_OPSETS``.
        parity_frames: how many frames the parity check draws (and int8 calibration: another draw of as many).
        trt_precision: "fp32", "fp16" or "int8" for the TensorRT engine.
        seed: picks the frames.
        fold: fold the in-model colour conversion and scaling into the first convolution
            (``deploy.fold``; the parity check still compares against the unfolded model). Defaults to `True`.
        throttle: the constant throttle a steering-only model's donkeycar pilot returns (a model with a
            throttle head uses the head). Defaults to `0.3`.

    Returns:
        ExportReport; ``report.passed`` says whether the parity tolerance of the format held (and so whether
        the artifact was written: ``report.written``).

    Raises:
        FileNotFoundError: the model or the calibration data does not exist.
        ValueError: a bad argument (checked before any work), an unreadable model, a failed conversion.

    Example:
        >>> report = export("runs/a/best.keras", "onnx", "pilotnet.onnx")
        >>> print(report.summary())
    """
    from deploy.predictor import load_keras_model, load_predictor
    from e2e_drive.models import output_names

    spec: ExportFormat = get_format(format)
    start = time.perf_counter()
    out = os.fspath(out)
    _check_arguments(spec, out, parity_frames, opset, trt_precision, throttle, seed)
    if isinstance(model_path, (str, os.PathLike)):
        model_name = os.fspath(model_path)
        if not os.path.exists(model_name):
            raise FileNotFoundError(f"model not found: {model_name}")
        model = load_keras_model(model_name)
    else:
        model, model_name = model_path, getattr(model_path, "name", "model")
    names = output_names(model)
    shape = model.input_shape[1:]
    notes: list[str] = []
    if frames is not None:
        data = as_parity_frames(frames, shape)
    else:
        data = load_frames(calibration, shape, count=int(parity_frames), seed=int(seed))
    log.info("export %s: parity frames: %s", spec.name, data.source)
    int8 = spec.name == "tflite-int8" or (spec.name == "tensorrt" and trt_precision == "int8")
    # int8 ranges come from another draw of frames, so the parity check is not scored on its own calibration set.
    calibration_frames = data
    if int8 and (frames is None or calibration is not None):
        calibration_frames = load_frames(calibration, shape, count=int(parity_frames), seed=int(seed) + 1)
    elif int8:
        notes.append("int8: calibrated on the parity frames given (pass calibration= for a separate draw)")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    keras_model = model
    if fold:
        from deploy.fold import fold_preprocessing

        model, fold_note = fold_preprocessing(model)
        notes.append(fold_note)

    tolerance = spec.parity_tolerance(trt_precision)
    reference = _in_memory(keras_model, throttle if spec.name == "donkeycar" and "throttle" not in names else None)
    verified = _Verified()

    def verify(tmp: str) -> None:
        candidate = load_predictor(tmp)
        verified.size = _size(tmp)
        verified.parity = compare(reference, candidate.predict_outputs, data, tolerance)
        if not verified.parity.passed:
            raise _ParityFailed(verified.parity)

    job = ExportJob(model, out, verify, int(opset), trt_precision, float(throttle), calibration_frames, notes)
    trt_info, artifact, ops = None, out, {}
    try:
        written = spec.write(job)
        trt_info, artifact, ops = written.details, written.artifact, written.ops
    except _ParityFailed as failure:
        parity = failure.parity
        notes.append(f"parity failed (max abs diff {parity.max_abs_diff:.3g} > tolerance {parity.tolerance}): "
                     f"the artifact was not written; {out} is unchanged")
        return ExportReport(spec.name, model_name, artifact, verified.size, ops, parity.to_dict(),
                            round(time.perf_counter() - start, 3), notes, trt_info, list(names), written=False)
    parity = verified.parity
    if data.source.startswith("random"):
        notes.append("parity measured on synthetic frames: pass --calibration DATA for real frames")
    if int8 and parity.rmse_change is None:
        notes.append("int8: no recorded steering with these frames, so no RMSE change; pass --calibration DATA (a log)")
    return ExportReport(spec.name, model_name, artifact, _size(artifact), ops, parity.to_dict(),
                        round(time.perf_counter() - start, 3), notes, trt_info, list(names))


def _in_memory(model, constant_throttle: float | None = None):
    """The Keras model as the parity reference, compiled like a served model: ``frames -> {name: (B,)}``.

    ``constant_throttle``: add the constant throttle a steering-only donkeycar pilot returns.
    """
    import tensorflow as tf  # heavy: only when exporting

    serve = tf.function(lambda x: model_outputs(model, x), reduce_retracing=True)

    def run(frames):
        # On the CPU: a GPU would run the reference in TF32 and miss the fp32 parity bound for its own sake.
        with tf.device("/CPU:0"):
            outputs = {name: value.numpy().reshape(len(frames)) for name, value in serve(frames).items()}
        if constant_throttle is not None:
            outputs["throttle"] = np.full(len(frames), constant_throttle, np.float32)
        return outputs

    return run
