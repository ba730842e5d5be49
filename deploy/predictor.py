"""``load_predictor``: one callable for every artifact, uint8 frames (B, H, W, 3) in, float32 steering (B,) out."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

import numpy as np

from deploy.formats import RUNTIME_BY_SUFFIX


class Predictor:
    """A loaded artifact: ``predictor(frames) -> steering``.

    Args:
        fn: maps a uint8 batch (B, H, W, 3) to steering of any shape holding B values.
        input_shape: the frame shape (H, W, 3) the artifact takes.
        runtime: "keras", "tensorflow", "onnxruntime", "litert", "tflite" or "tensorrt".
        path: the artifact.

    Example:
        >>> predictor = load_predictor("pilotnet.onnx")
        >>> predictor(np.zeros((2, *predictor.input_shape), np.uint8)).shape
        (2,)
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], input_shape: tuple[int, int, int], runtime: str,
                 path: str, note: str | None = None):
        self._fn = fn
        self.input_shape = tuple(int(d) for d in input_shape)
        self.runtime = runtime
        self.path = path
        self.note = note

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or tuple(frames.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.path}: expected frames of shape (B, {', '.join(map(str, self.input_shape))}). "
                             f"Received: shape={frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected uint8 RGB frames. Received: dtype={frames.dtype}")
        return np.asarray(self._fn(np.ascontiguousarray(frames)), np.float32).reshape(len(frames))

    def __repr__(self) -> str:
        return f"Predictor({self.path!r}, runtime={self.runtime!r}, input_shape={self.input_shape})"


def load_keras_model(path: str):
    """A .keras file as a keras.Model (``e2e_drive.models.load_model``)."""
    from e2e_drive.models import load_model

    return load_model(path)


def load_predictor(path: str | os.PathLike) -> Predictor:
    """Load an artifact by its suffix: .keras, a SavedModel directory, .onnx, .tflite, or a TensorRT engine.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an unknown suffix or an unreadable artifact (one line naming the file).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model not found: {path}")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path}: a directory but not a SavedModel (no saved_model.pb)")
        return _saved_model(path)
    suffix = os.path.splitext(path)[1].lower()
    runtime = RUNTIME_BY_SUFFIX.get(suffix)
    if runtime is None:
        raise ValueError(f"{path}: unknown model suffix {suffix or '(none)'!r}; expected one of "
                         f"{', '.join(sorted(RUNTIME_BY_SUFFIX))} or a SavedModel directory")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: file is empty (0 bytes)")
    return {"keras": _keras, "onnxruntime": _onnx, "litert": _tflite, "tensorrt": _tensorrt}[runtime](path)


def _keras(path: str) -> Predictor:
    import tensorflow as tf

    model = load_keras_model(path)
    shape = tuple(model.input_shape[1:])
    # A tf.function is what a served Keras model runs as; eager calls would understate Keras' speed.
    serve = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return Predictor(lambda frames: serve(frames).numpy(), shape, "keras", path)


def _saved_model(path: str) -> Predictor:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
    except Exception as error:  # TensorFlow raises many types for a broken SavedModel
        raise ValueError(f"{path}: cannot load the SavedModel: {str(error).splitlines()[0][:300]}") from None
    serve = loaded.signatures.get("serving_default") or loaded.signatures[next(iter(loaded.signatures))]
    (spec,) = serve.structured_input_signature[1].values()
    name = next(iter(serve.structured_input_signature[1]))

    def run(frames):
        (out,) = serve(**{name: tf.constant(frames, dtype=spec.dtype)}).values()
        return out.numpy()

    return Predictor(run, tuple(spec.shape[1:]), "tensorflow", path)


def _onnx(path: str) -> Predictor:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ValueError(f"{path}: cannot load the ONNX model: {str(error).splitlines()[0][:300]}") from None
    (inp,) = session.get_inputs()
    dtype = np.float32 if inp.type == "tensor(float)" else np.uint8
    shape = tuple(int(d) for d in inp.shape[1:])
    return Predictor(lambda frames: session.run(None, {inp.name: frames.astype(dtype, copy=False)})[0], shape,
                     "onnxruntime", path)


def tflite_interpreter(path: str, num_threads: int | None = None):
    """A LiteRT interpreter, or TensorFlow's deprecated one (with a note) when LiteRT is absent.

    ``num_threads`` defaults to every CPU: the interpreter's own default is one
    thread (PilotNet at batch 1: 1.03 ms on one of two cores, 0.79 ms on both).
    """
    num_threads = num_threads or os.cpu_count() or 1
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=path, num_threads=num_threads), "litert", None
    except ImportError:
        import tensorflow as tf

        note = "ai-edge-litert is not installed: using the deprecated tf.lite.Interpreter"
        print(f"note: {note}", file=sys.stderr)
        return tf.lite.Interpreter(model_path=path, num_threads=num_threads), "tflite", note
    except ValueError as error:
        raise ValueError(f"{path}: cannot load the TFLite model: {str(error).splitlines()[0][:300]}") from None


def _tflite(path: str) -> Predictor:
    interpreter, runtime, note = tflite_interpreter(path)
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    state = {"batch": None}

    def run(frames):
        if state["batch"] != len(frames):  # the batch is dynamic: resize once per new batch size
            interpreter.resize_tensor_input(inp["index"], [len(frames), *inp["shape"][1:]])
            interpreter.allocate_tensors()
            state["batch"] = len(frames)
        interpreter.set_tensor(inp["index"], frames.astype(inp["dtype"], copy=False))
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"])
        scale, zero = out.get("quantization", (0.0, 0))
        if scale:  # an int8 output: dequantize
            result = (result.astype(np.float32) - zero) * scale
        return result

    return Predictor(run, tuple(inp["shape"][1:]), runtime, path, note)


def _tensorrt(path: str) -> Predictor:
    from deploy.tensorrt import load_engine

    fn, shape = load_engine(path)
    return Predictor(fn, shape, "tensorrt", path)
