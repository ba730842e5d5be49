"""``deploy.export``: a Keras model to SavedModel, ONNX, TFLite (fp32/fp16/int8) or TensorRT, with a parity report."""

from __future__ import annotations

import collections
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from deploy.formats import ExportFormat, get_format
from deploy.parity import ParityFrames, compare, load_frames

DEFAULT_OPSET = 17
INPUT_NAME = "frames"


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

    @property
    def passed(self) -> bool:
        return bool(self.parity.get("passed", False))

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "model": self.model, "path": self.path, "size_bytes": self.size_bytes,
                "ops": self.ops, "parity": self.parity, "passed": self.passed, "seconds": self.seconds,
                "notes": self.notes, "tensorrt": self.tensorrt}

    def summary(self) -> str:
        """The human-readable parity report."""
        p = self.parity
        lines = [f"exported {self.model} -> {self.path} ({self.format}, {self.size_bytes / 1e6:.2f} MB, {self.seconds:.1f} s)",
                 f"parity vs Keras on {p['frames']} frames ({p['source']}): max abs diff {p['max_abs_diff']:.3g}, "
                 f"mean {p['mean_abs_diff']:.3g}, tolerance {p['tolerance'] if p['tolerance'] is not None else 'n/a'}"
                 f" -> {'PASS' if self.passed else 'FAIL'}"]
        if p.get("rmse_change") is not None:
            lines.append(f"steering RMSE vs recorded labels: Keras {p['keras_rmse']:.4f}, artifact {p['artifact_rmse']:.4f}"
                         f" (change {p['rmse_change']:+.4f})")
        lines.append("ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1])))
        if self.tensorrt is not None:
            check = self.tensorrt
            lines.append(f"TensorRT static check ({check['source']}): {'OK' if check['ok'] else 'FAILED'}; "
                         f"inputs {check['inputs']}")
            lines += [f"  problem: {problem}" for problem in check["problems"]]
            lines.append(f"build on the target: {check['trtexec']}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _serving_function(model, input_dtype: str = "uint8"):
    """A tf.function on frames [None, H, W, 3] of ``input_dtype`` returning steering [None, 1]."""
    import tensorflow as tf

    shape = tuple(model.input_shape[1:])
    spec = (tf.TensorSpec((None, *shape), getattr(tf, input_dtype), name=INPUT_NAME),)
    model_dtype = model.inputs[0].dtype

    @tf.function(input_signature=spec)
    def serve(frames):
        return model(tf.cast(frames, model_dtype), training=False)

    return serve, spec


def _atomic_target(out: str) -> tuple[str, str]:
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    return directory, os.path.basename(out)


def _write_bytes_atomically(out: str, data: bytes) -> None:
    directory, name = _atomic_target(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def export_onnx_proto(model, opset: int = DEFAULT_OPSET, input_dtype: str = "uint8"):
    """The model as an ONNX ModelProto: dynamic batch, standard ops, ``input_dtype`` frames in."""
    import tf2onnx

    serve, spec = _serving_function(model, input_dtype)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    custom = sorted({f"{n.domain}:{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise ValueError(f"ONNX export needs non-standard ops {custom}; they would not run on onnxruntime/TensorRT")
    return proto


def onnx_ops(proto) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in proto.graph.node))


def _tflite_bytes(model, kind: str, frames: ParityFrames | None) -> bytes:
    import tensorflow as tf

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    serve, _ = _serving_function(model)
    # Freeze first: left as resource variables, Keras 3 weights reach the .tflite as VAR_HANDLE ops that
    # LiteRT reads as uninitialised (NaN steering, and int8 calibration fails).
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    return _convert(tf.lite.TFLiteConverter.from_concrete_functions([frozen], model), kind, frames)


def _convert(converter, kind: str, frames: ParityFrames | None) -> bytes:
    import tensorflow as tf

    if kind in ("tflite-fp16", "tflite-int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "tflite-fp16":
        converter.target_spec.supported_types = [tf.float16]
    if kind == "tflite-int8":
        samples = frames.frames

        def representative():
            for frame in samples:
                yield [frame[None]]

        converter.representative_dataset = representative
    return converter.convert()


def tflite_ops(path: str) -> dict[str, int]:
    from deploy.predictor import tflite_interpreter

    interpreter, _, _ = tflite_interpreter(path)
    return dict(collections.Counter(op["op_name"] for op in interpreter._get_ops_details()))


def _save_module(model, directory: str):
    """Save the serving function (uint8 frames in) as a SavedModel in ``directory``; return the function."""
    import tensorflow as tf

    serve, _ = _serving_function(model)
    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, directory, signatures={"serving_default": serve})
    return serve


def _saved_model(model, out: str) -> dict[str, int]:
    directory, name = _atomic_target(out)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=directory)
    try:
        serve = _save_module(model, tmp)
        if os.path.isdir(out):  # os.replace cannot replace a non-empty directory: move the old one aside first
            old = tempfile.mkdtemp(prefix=f".{name}.old.", dir=directory)
            os.replace(out, os.path.join(old, "x"))
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    graph_ops = collections.Counter(op.type for op in serve.get_concrete_function().graph.get_operations())
    return {k: v for k, v in graph_ops.items() if k not in ("Placeholder", "Identity", "NoOp", "ReadVariableOp")}


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def export(model_path: str | os.PathLike, format: str, out: str | os.PathLike, calibration: Any = None,
           opset: int = DEFAULT_OPSET, parity_frames: int = 32, trt_precision: str = "fp16",
           seed: int = 0, fold: bool = True) -> ExportReport:
    """Export a .keras model (raw uint8 RGB frames in, steering out) and check it against Keras.

    Args:
        model_path: the .keras file (or an in-memory keras.Model).
        format: a name from ``deploy.formats.FORMATS``.
        out: the artifact to write (a directory for saved_model), atomically.
        calibration: a Udacity log / tub / image folder for parity and int8 calibration; default simulator frames.
        opset: the ONNX opset (onnx and tensorrt).
        parity_frames: how many frames the parity check uses (and int8 calibration: another draw of as many).
        trt_precision: "fp32", "fp16" or "int8" for the TensorRT engine.
        seed: picks the frames.
        fold: fold the in-model colour conversion and scaling into the first convolution
            (``deploy.fold``; the parity check still compares against the unfolded model). Defaults to `True`.

    Returns:
        ExportReport; ``report.passed`` says whether the parity tolerance of the format held.

    Example:
        >>> report = export("runs/a/best.keras", "onnx", "pilotnet.onnx")
        >>> print(report.summary())
    """
    from deploy.predictor import load_keras_model, load_predictor

    spec: ExportFormat = get_format(format)
    start = time.perf_counter()
    if isinstance(model_path, (str, os.PathLike)):
        model_name = os.fspath(model_path)
        if not os.path.exists(model_name):
            raise FileNotFoundError(f"model not found: {model_name}")
        model = load_keras_model(model_name)
    else:
        model, model_name = model_path, getattr(model_path, "name", "model")
    out = os.fspath(out)
    if spec.suffix and not out.endswith(spec.suffix):
        raise ValueError(f"--out {out}: a {spec.name} artifact should end with {spec.suffix}")
    frames = load_frames(calibration, model.input_shape[1:], count=parity_frames, seed=seed)
    print(f"export {spec.name}: parity frames: {frames.source}", file=sys.stderr, flush=True)
    # int8 ranges come from another draw of frames, so the parity check is not scored on its own calibration set.
    calibration_frames = frames
    if spec.name == "tflite-int8" or (spec.name == "tensorrt" and trt_precision == "int8"):
        calibration_frames = load_frames(calibration, model.input_shape[1:], count=parity_frames, seed=seed + 1)
    notes: list[str] = []
    keras_model = model
    if fold:
        from deploy.fold import fold_preprocessing

        model, fold_note = fold_preprocessing(model)
        notes.append(fold_note)
    trt_info = None
    artifact = out
    if spec.name == "saved_model":
        ops = _saved_model(model, out)
    elif spec.name == "onnx":
        proto = export_onnx_proto(model, opset)
        _write_bytes_atomically(out, proto.SerializeToString())
        ops = onnx_ops(proto)
    elif spec.name.startswith("tflite"):
        _write_bytes_atomically(out, _tflite_bytes(model, spec.name, calibration_frames))
        ops = tflite_ops(out)
    else:
        from deploy import tensorrt

        onnx_path = tensorrt.onnx_path_for(out)
        # TensorRT takes no uint8 network inputs: this ONNX takes float32 frames in [0, 255] and casts inside.
        proto = export_onnx_proto(model, opset, input_dtype="float32")
        if trt_precision == "int8":
            proto = tensorrt.quantize_qdq(proto, calibration_frames.frames)
            notes.append(f"int8: explicit Q/DQ quantization (symmetric, per-channel weights) calibrated on "
                         f"{len(calibration_frames.frames)} other frames ({calibration_frames.source})")
        _write_bytes_atomically(onnx_path, proto.SerializeToString())
        ops = onnx_ops(proto)
        check = tensorrt.static_check(proto)
        trt_info = check.to_dict()
        trt_info["onnx"] = onnx_path
        trt_info["trtexec"] = tensorrt.trtexec_command(onnx_path, out, model.input_shape[1:], trt_precision)
        if tensorrt.available():
            calib = calibration_frames.frames if trt_precision == "int8" else None
            tensorrt.build_engine(onnx_path, out, model.input_shape[1:], trt_precision, calib)
            trt_info["engine_built"] = True
        else:
            trt_info["engine_built"] = False
            notes.append(f"TensorRT not available here ({tensorrt.unavailable_reason()}): wrote the float32-input ONNX "
                         f"{onnx_path}, checked its ops statically; parity below is that ONNX on onnxruntime. "
                         f"Build the engine on the target with: {trt_info['trtexec']}")
            artifact = onnx_path
        if not check.ok:
            notes.append("TensorRT static check FAILED: " + "; ".join(check.problems))
    if frames.source.startswith("random"):
        notes.append("parity measured on synthetic frames: pass --calibration DATA for real frames")
    reference = _in_memory(keras_model)
    candidate = load_predictor(artifact)
    tolerance = spec.tolerance
    if spec.name == "tensorrt":
        # The engine's precision sets its tolerance; the float32 ONNX checked on onnxruntime must match fp32.
        tolerance = {"fp32": 1e-4, "fp16": 1e-2, "int8": None}[trt_precision] if artifact == out \
            else None if trt_precision == "int8" else 1e-4
    parity = compare(reference, candidate, frames, tolerance)
    int8 = spec.name == "tflite-int8" or (spec.name == "tensorrt" and trt_precision == "int8")
    if int8 and parity.rmse_change is None:
        notes.append("int8: no recorded steering with these frames, so no RMSE change; pass --calibration DATA (a log)")
    report = ExportReport(spec.name, model_name, out if artifact == out else artifact, _size(artifact), ops,
                          parity.to_dict(), round(time.perf_counter() - start, 3), notes, trt_info)
    return report


def _in_memory(model):
    """The Keras model as the parity reference, compiled like a served model."""
    import tensorflow as tf

    serve = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda frames: serve(frames).numpy()
