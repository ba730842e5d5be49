"""``deploy.export``: a Keras model to SavedModel, ONNX, TFLite (fp32/fp16/int8), TensorRT or a donkeycar pilot,
with a parity report.

Every artifact is written to a temporary path beside ``out``, loaded back and checked against Keras there, and
only then moved into place (``data_tools.io.atomic_path`` / ``atomic_directory``): a failed export, at any step,
leaves the previous artifact byte-identical and no temporary file behind. Arguments are checked before any work.
"""

from __future__ import annotations

import collections
import logging
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_tools.io import atomic_directory, atomic_path
from deploy.formats import ExportFormat, get_format
from deploy.parity import ParityFrames, ParityResult, as_parity_frames, compare, load_frames
from deploy.predictor import DONKEYCAR_INPUT, DONKEYCAR_OUTPUTS

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# Opsets tf2onnx 1.17 writes (tf2onnx.constants.OPSET_TO_IR_VERSION ends at 18) that hold our graphs
# (Resize with the modes FramePreprocess uses needs opset 11).
ONNX_OPSETS = (11, 18)
TRT_PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "frames"
# The throttle a steering-only model's donkeycar pilot returns: the constant our simulator logs record
# (e2e_drive.sim.record) and a moderate cruise on a donkeycar's [-1, 1] throttle.
DEFAULT_THROTTLE = 0.3


class ExportError(ValueError):
    """An export that could not be completed; the previous artifact (if any) is unchanged."""


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


def _output_names(model) -> tuple[str, ...]:
    from e2e_drive.models import output_names

    return output_names(model)


def _model_outputs(model, x) -> dict:
    """The model's outputs on ``x`` as ``{name: tensor}`` (a single-output model: ``{"steering": ...}``)."""
    out = model(x, training=False)
    if isinstance(out, dict):
        return dict(out)
    if isinstance(out, (list, tuple)):
        return dict(zip(model.output_names, out))
    return {"steering": out}


def _serving_function(model, input_dtype: str = "uint8", donkeycar_throttle: float | None = None):
    """A tf.function on frames [None, H, W, 3] returning ``{output name: [None, 1] float32}``.

    ``donkeycar_throttle`` set: the donkeycar pilot's signature instead: ``img_in`` float32 frames divided by
    255 (rounded back to the uint8 frame inside, so the model sees exactly the camera's pixels) returning
    ``n_outputs0`` (steering) and ``n_outputs1`` (the throttle head, or this constant without one).
    """
    import tensorflow as tf  # heavy: only when exporting

    shape = tuple(model.input_shape[1:])
    model_dtype = model.inputs[0].dtype
    if donkeycar_throttle is None:
        spec = (tf.TensorSpec((None, *shape), getattr(tf, input_dtype), name=INPUT_NAME),)

        @tf.function(input_signature=spec)
        def serve(frames):
            outputs = _model_outputs(model, tf.cast(frames, model_dtype))
            return {name: tf.cast(value, tf.float32) for name, value in outputs.items()}

        return serve, spec

    spec = (tf.TensorSpec((None, *shape), tf.float32, name=DONKEYCAR_INPUT),)

    @tf.function(input_signature=spec)
    def serve_donkeycar(img_in):
        pixels = tf.clip_by_value(tf.round(img_in * 255.0), 0.0, 255.0)
        outputs = _model_outputs(model, tf.cast(pixels, model_dtype))
        steering = tf.cast(outputs["steering"], tf.float32)
        if "throttle" in outputs:
            throttle = tf.cast(outputs["throttle"], tf.float32)
        else:
            throttle = tf.fill(tf.shape(steering), tf.constant(donkeycar_throttle, tf.float32))
        angle, throttle_name = DONKEYCAR_OUTPUTS  # KerasLinear's order: angle, then throttle
        return {angle: steering, throttle_name: throttle}

    return serve_donkeycar, spec


def export_onnx_proto(model, opset: int = DEFAULT_OPSET, input_dtype: str = "uint8"):
    """The model as an ONNX ModelProto: dynamic batch, standard ops, ``input_dtype`` frames in, one output
    per model output (``steering``, ``throttle``)."""
    import tf2onnx  # optional dependency, heavy

    serve, spec = _serving_function(model, input_dtype)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    custom = sorted({f"{n.domain}:{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise ExportError(f"ONNX export needs non-standard ops {custom}; they would not run on onnxruntime/TensorRT")
    return proto


def onnx_ops(proto) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in proto.graph.node))


def _tflite_bytes(model, kind: str, frames: ParityFrames | None, donkeycar_throttle: float | None = None) -> bytes:
    """The model as TFLite flatbuffer bytes, its signature ``serving_default`` keeping the output names."""
    import tempfile

    import tensorflow as tf  # heavy: only when exporting
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    serve, spec = _serving_function(model, donkeycar_throttle=donkeycar_throttle)
    concrete = serve.get_concrete_function()
    # Freeze first: left as resource variables, Keras 3 weights reach the .tflite as VAR_HANDLE ops that
    # LiteRT reads as uninitialised (NaN steering, and int8 calibration fails).
    frozen = convert_variables_to_constants_v2(concrete)
    structure = concrete.structured_outputs

    @tf.function(input_signature=spec)
    def named(x):
        # The frozen function returns a flat list; re-pack it so the signature keeps the output names.
        return tf.nest.pack_sequence_as(structure, tf.nest.flatten(frozen(x)))

    module = tf.Module()
    module.serve = named
    # A scratch SavedModel (removed at once): from_saved_model is the converter path that keeps signature names.
    with tempfile.TemporaryDirectory(prefix="e2e-drive-tflite-") as scratch:
        tf.saved_model.save(module, scratch, signatures={"serving_default": named})
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
        return _convert(converter, kind, frames)


def _convert(converter, kind: str, frames: ParityFrames | None) -> bytes:
    import tensorflow as tf  # heavy: only when exporting

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
    import tensorflow as tf  # heavy: only when exporting

    serve, _ = _serving_function(model)
    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, directory, signatures={"serving_default": serve})
    return serve


def _saved_model_ops(serve) -> dict[str, int]:
    graph_ops = collections.Counter(op.type for op in serve.get_concrete_function().graph.get_operations())
    return {k: v for k, v in graph_ops.items() if k not in ("Placeholder", "Identity", "NoOp", "ReadVariableOp")}


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def _write(path: str, data: bytes) -> None:
    """Fill a temporary path that ``atomic_path`` handed out (it moves the file into place)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


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
    names = _output_names(model)
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

    tolerance = spec.tolerance
    if spec.name == "tensorrt":
        from deploy import tensorrt

        tolerance = tensorrt.parity_tolerance(trt_precision, engine=tensorrt.available())
    reference = _in_memory(keras_model, throttle if spec.name == "donkeycar" and "throttle" not in names else None)
    verified = _Verified()

    def verify(tmp: str) -> None:
        candidate = load_predictor(tmp)
        verified.size = _size(tmp)
        verified.parity = compare(reference, candidate.predict_outputs, data, tolerance)
        if not verified.parity.passed:
            raise _ParityFailed(verified.parity)

    trt_info = None
    artifact = out
    ops: dict[str, int] = {}
    try:
        if spec.name == "saved_model":
            with atomic_directory(out, verify) as tmp:
                ops = _saved_model_ops(_save_module(model, tmp))
        elif spec.name == "onnx":
            proto = export_onnx_proto(model, opset)
            ops = onnx_ops(proto)
            with atomic_path(out, verify) as tmp:
                _write(tmp, proto.SerializeToString())
        elif spec.name.startswith("tflite") or spec.name == "donkeycar":
            kind = "tflite" if spec.name == "donkeycar" else spec.name
            constant = throttle if spec.name == "donkeycar" else None
            content = _tflite_bytes(model, kind, calibration_frames, donkeycar_throttle=constant)
            with atomic_path(out, verify) as tmp:
                _write(tmp, content)
                ops = tflite_ops(tmp)
            if spec.name == "donkeycar":
                notes.append("donkeycar pilot: signature serving_default, img_in = frame / 255 (float32, "
                             f"1x{'x'.join(map(str, shape))}), outputs n_outputs0 (angle), n_outputs1 (throttle"
                             + (", the model's throttle head)" if "throttle" in names
                                else f" = constant {throttle:g}: the model has no throttle head)")
                             + "; load it with KerasLinear(interpreter=TfLite()) and myconfig.py "
                             "DEFAULT_MODEL_TYPE = 'linear' with a .tflite model")
        else:
            trt_info, artifact = _export_tensorrt(model, out, opset, trt_precision, calibration_frames, notes,
                                                  verify)
            ops = trt_info.pop("ops")
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


def _export_tensorrt(model, out: str, opset: int, precision: str, calibration_frames: ParityFrames,
                     notes: list[str], verify) -> tuple[dict[str, Any], str]:
    """The float32-input ONNX next to ``out`` and, where TensorRT runs, the engine; both verified first."""
    from deploy import tensorrt

    onnx_path = tensorrt.onnx_path_for(out)
    # TensorRT takes no uint8 network inputs: this ONNX takes float32 frames in [0, 255] and casts inside.
    proto = export_onnx_proto(model, opset, input_dtype="float32")
    if precision == "int8":
        proto = tensorrt.quantize_qdq(proto, calibration_frames.frames)
        notes.append(f"int8: explicit Q/DQ quantization (symmetric, per-channel weights) calibrated on "
                     f"{len(calibration_frames.frames)} other frames ({calibration_frames.source})")
    check = tensorrt.static_check(proto)
    info = check.to_dict()
    info["onnx"] = onnx_path
    info["trtexec"] = tensorrt.trtexec_command(onnx_path, out, model.input_shape[1:], precision)
    info["trtexec_tensorrt11"] = tensorrt.trtexec_command(onnx_path, out, model.input_shape[1:], precision,
                                                          tensorrt_major=11)
    notes.append(tensorrt.tensorrt11_note(precision, info["trtexec_tensorrt11"]))
    info["ops"] = onnx_ops(proto)
    if not check.ok:
        notes.append("TensorRT static check FAILED: " + "; ".join(check.problems))
    if tensorrt.available():
        with atomic_path(onnx_path) as onnx_tmp:
            _write(onnx_tmp, proto.SerializeToString())
            with atomic_path(out, verify) as engine_tmp:
                calib = calibration_frames.frames if precision == "int8" else None
                tensorrt.build_engine(onnx_tmp, engine_tmp, model.input_shape[1:], precision, calib)
        info["engine_built"] = True
        return info, out
    # Without TensorRT the float32 ONNX checked on onnxruntime is the artifact (tensorrt.parity_tolerance).
    with atomic_path(onnx_path, verify) as tmp:
        _write(tmp, proto.SerializeToString())
    info["engine_built"] = False
    notes.append(f"TensorRT not available here ({tensorrt.unavailable_reason()}): wrote the float32-input ONNX "
                 f"{onnx_path}, checked its ops statically; parity below is that ONNX on onnxruntime. "
                 f"Build the engine on the target with: {info['trtexec']}")
    return info, onnx_path


def _in_memory(model, constant_throttle: float | None = None):
    """The Keras model as the parity reference, compiled like a served model: ``frames -> {name: (B,)}``.

    ``constant_throttle``: add the constant throttle a steering-only donkeycar pilot returns.
    """
    import tensorflow as tf  # heavy: only when exporting

    serve = tf.function(lambda x: _model_outputs(model, x), reduce_retracing=True)

    def run(frames):
        # On the CPU: a GPU would run the reference in TF32 and miss the fp32 parity bound for its own sake.
        with tf.device("/CPU:0"):
            outputs = {name: value.numpy().reshape(len(frames)) for name, value in serve(frames).items()}
        if constant_throttle is not None:
            outputs["throttle"] = np.full(len(frames), constant_throttle, np.float32)
        return outputs

    return run
