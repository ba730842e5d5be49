"""``--format tflite``, ``tflite-fp16`` and ``tflite-int8``: a frozen TFLite flatbuffer, signature ``serving_default``."""

from __future__ import annotations

import collections
from functools import partial

from data_tools.io import atomic_path
from deploy.formats.base import ExportFormat, ExportJob, Written, write_bytes
from deploy.formats.serving import serving_function


def tflite_bytes(model, kind: str, frames, donkeycar_throttle: float | None = None) -> bytes:
    """The model as TFLite flatbuffer bytes, its signature ``serving_default`` keeping the output names.

    ``kind``: "tflite", "tflite-fp16" or "tflite-int8" (``frames``: ``ParityFrames`` for the int8 ranges).
    """
    import tempfile

    import tensorflow as tf  # heavy: only when exporting
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    serve, spec = serving_function(model, donkeycar_throttle=donkeycar_throttle)
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


def _convert(converter, kind: str, frames) -> bytes:
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


def write_flatbuffer(job: ExportJob, content: bytes) -> Written:
    with atomic_path(job.out, job.verify) as tmp:
        write_bytes(tmp, content)
        ops = tflite_ops(tmp)
    return Written(ops, job.out)


def write(kind: str, job: ExportJob) -> Written:
    return write_flatbuffer(job, tflite_bytes(job.model, kind, job.calibration_frames))


FORMATS = (
    ExportFormat("tflite", ".tflite", "ai-edge-litert (runtime)", False, 1e-4, "TensorFlow Lite float32",
                 partial(write, "tflite")),
    ExportFormat("tflite-fp16", ".tflite", "ai-edge-litert (runtime)", False, 1e-2,
                 "TensorFlow Lite with float16 weights", partial(write, "tflite-fp16")),
    ExportFormat("tflite-int8", ".tflite", "calibration frames", False, None,
                 "TensorFlow Lite int8 (representative dataset from --calibration)", partial(write, "tflite-int8")),
)
