"""``load_predictor``: one callable for every artifact, uint8 frames (B, H, W, 3) in, float32 steering (B,) out.

A model with a throttle head (``pilotnet(outputs=("steering", "throttle"))``) keeps it in every artifact:
``predictor.output_names`` lists the outputs and ``predictor.predict_outputs(frames)`` returns them all.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Mapping

import numpy as np

from data_tools.errors import first_line

log = logging.getLogger(__name__)

# A donkeycar pilot (``--format donkeycar``) takes float32 frames divided by 255 as ``img_in`` and returns
# angle and throttle as ``n_outputs0`` and ``n_outputs1`` (donkeycar.parts.keras.KerasLinear's names).
DONKEYCAR_INPUT = "img_in"
DONKEYCAR_OUTPUTS = {"n_outputs0": "steering", "n_outputs1": "throttle"}
# Suffix -> runtime, for loading an artifact whose format is not given.
RUNTIME_BY_SUFFIX = {".keras": "keras", ".onnx": "onnxruntime", ".tflite": "litert", ".plan": "tensorrt",
                     ".engine": "tensorrt", ".trt": "tensorrt"}


class Predictor:
    """A loaded artifact: ``predictor(frames) -> steering``.

    Args:
        fn: maps a uint8 batch (B, H, W, 3) to the outputs: one array holding B values (a single-output
            artifact) or a mapping ``name -> array`` holding B values each.
        input_shape: the frame shape (H, W, 3) the artifact takes.
        runtime: "keras", "tensorflow", "onnxruntime", "litert", "tflite" or "tensorrt".
        path: the artifact.
        note: something the user should know about how it runs (printed by the CLI).
        output_names: the names of ``fn``'s outputs, steering first. Defaults to `("steering",)`.

    Example:
        >>> predictor = load_predictor("pilotnet.onnx")
        >>> predictor(np.zeros((2, *predictor.input_shape), np.uint8)).shape
        (2,)
        >>> predictor.predict_outputs(frames)  # {"steering": (B,), "throttle": (B,)} for a two-head model
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray | Mapping[str, np.ndarray]],
                 input_shape: tuple[int, int, int], runtime: str, path: str, note: str | None = None,
                 output_names: tuple[str, ...] = ("steering",)):
        self._fn = fn
        self.input_shape = tuple(int(d) for d in input_shape)
        self.runtime = runtime
        self.path = path
        self.note = note
        self.output_names = tuple(output_names)

    def _check(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or tuple(frames.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.path}: expected frames of shape (B, {', '.join(map(str, self.input_shape))}). "
                             f"Received: shape={frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected uint8 RGB frames. Received: dtype={frames.dtype}")
        return np.ascontiguousarray(frames)

    def predict_outputs(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the artifact on ``frames``: ``{name: float32 (B,)}``, steering first."""
        frames = self._check(frames)
        result = self._fn(frames)
        if not isinstance(result, Mapping):
            result = {self.output_names[0]: result}
        return {name: np.asarray(result[name], np.float32).reshape(len(frames)) for name in self.output_names}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Steering ``float32 (B,)`` for uint8 frames ``(B, H, W, 3)`` (or one ``(H, W, 3)`` frame)."""
        return self.predict_outputs(frames)[self.output_names[0]]

    def __repr__(self) -> str:
        return (f"Predictor({self.path!r}, runtime={self.runtime!r}, input_shape={self.input_shape}, "
                f"outputs={self.output_names})")


def load_keras_model(path: str):
    """A .keras file as a keras.Model (``e2e_drive.models.load_model``, the project's one Keras loader)."""
    from e2e_drive.models import load_model

    return load_model(path)


def load_predictor(path: str | os.PathLike) -> Predictor:
    """Load an artifact by its suffix: .keras, a SavedModel directory, .onnx, .tflite, or a TensorRT engine.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an unknown suffix, an unreadable artifact or one whose inputs a predictor cannot feed
            (one line naming the file).
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


def _steering_first(names) -> tuple[str, ...]:
    names = list(names)
    return tuple(sorted(names, key=lambda name: (name != "steering", names.index(name))))


def _keras(path: str) -> Predictor:
    import tensorflow as tf  # heavy: only when a Keras model is served

    from e2e_drive.models import output_names

    model = load_keras_model(path)
    shape = tuple(model.input_shape[1:])
    names = output_names(model)
    # A tf.function is what a served Keras model runs as; eager calls would understate Keras' speed.
    serve = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def run(frames):
        out = serve(frames)
        if isinstance(out, Mapping):
            return {name: value.numpy() for name, value in out.items()}
        if isinstance(out, (list, tuple)):
            return {name: value.numpy() for name, value in zip(model.output_names, out)}
        return out.numpy()

    return Predictor(run, shape, "keras", path, output_names=names)


def _saved_model(path: str) -> Predictor:
    import tensorflow as tf  # heavy: only when a SavedModel is served

    try:
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures.get("serving_default") or loaded.signatures[next(iter(loaded.signatures))]
    except Exception as error:  # TensorFlow raises many types for a broken SavedModel
        raise ValueError(f"{path}: cannot load the SavedModel: {first_line(error)}") from None
    inputs = serve.structured_input_signature[1]
    if len(inputs) != 1:
        raise ValueError(f"{path}: the SavedModel's serving signature has {len(inputs)} inputs "
                         f"({', '.join(inputs)}); a predictor feeds one input of frames (B, H, W, 3)")
    (name, spec), = inputs.items()
    outputs = list(serve.structured_outputs)
    names = _steering_first(outputs) if len(outputs) > 1 else ("steering",)

    def run(frames):
        out = serve(**{name: tf.constant(frames, dtype=spec.dtype)})
        if len(outputs) == 1:
            return next(iter(out.values())).numpy()
        return {key: value.numpy() for key, value in out.items()}

    return Predictor(run, tuple(spec.shape[1:]), "tensorflow", path, output_names=names)


def _onnx(path: str) -> Predictor:
    import onnxruntime as ort  # optional dependency: only when an ONNX model is served

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ValueError(f"{path}: cannot load the ONNX model: {first_line(error)}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"{path}: the ONNX model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                         f"a predictor feeds one input of frames (B, H, W, 3)")
    (inp,) = inputs
    dims = list(inp.shape)
    if len(dims) != 4:
        raise ValueError(f"{path}: the ONNX input {inp.name!r} has shape {dims}; expected frames (B, H, W, 3)")
    symbolic = [d for d in dims[1:] if not isinstance(d, int)]
    if symbolic:
        raise ValueError(f"{path}: the ONNX input {inp.name!r} has symbolic dimensions {symbolic} besides the batch "
                         f"(shape {dims}); export it with a fixed frame size (H, W, 3)")
    if dims[3] != 3:
        raise ValueError(f"{path}: the ONNX input {inp.name!r} has shape {dims}; expected channels-last RGB "
                         f"frames (B, H, W, 3)")
    dtypes = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}
    if inp.type not in dtypes:
        raise ValueError(f"{path}: the ONNX input {inp.name!r} is {inp.type}; expected uint8 or float32 frames")
    dtype = dtypes[inp.type]
    graph_names = [o.name for o in session.get_outputs()]
    names = _steering_first(graph_names) if len(graph_names) > 1 else ("steering",)
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    if batch is not None and batch != 1:
        raise ValueError(f"{path}: the ONNX input {inp.name!r} has a fixed batch of {batch} (shape {dims}); "
                         f"export it with a dynamic batch (or a batch of 1)")
    note = None
    if batch == 1:
        note = f"{os.path.basename(path)} has a fixed batch of 1: batches run one frame at a time"

    def run_batch(frames):
        return session.run(None, {inp.name: frames.astype(dtype, copy=False)})

    def run(frames):
        if batch == 1:
            parts = [run_batch(frames[i : i + 1]) for i in range(len(frames))]
            results = [np.concatenate([np.reshape(p[k], (1, -1)) for p in parts]) for k in range(len(graph_names))]
        else:
            results = run_batch(frames)
        if len(graph_names) == 1:
            return results[0]
        return dict(zip(graph_names, results))

    return Predictor(run, tuple(int(d) for d in dims[1:]), "onnxruntime", path, note, names)


def tflite_interpreter(path: str, num_threads: int | None = None):
    """A LiteRT interpreter, or TensorFlow's deprecated one (with a note) when LiteRT is absent.

    ``num_threads`` defaults to every CPU: the interpreter's own default is one
    thread (PilotNet at batch 1: 1.03 ms on one of two cores, 0.79 ms on both).
    """
    num_threads = num_threads or os.cpu_count() or 1
    try:
        from ai_edge_litert.interpreter import Interpreter  # optional runtime

        runtime, note = "litert", None
    except ImportError:
        import tensorflow as tf  # the fallback runtime, heavy

        Interpreter = tf.lite.Interpreter
        runtime, note = "tflite", "ai-edge-litert is not installed: using the deprecated tf.lite.Interpreter"
        log.warning(note)
    try:
        return Interpreter(model_path=path, num_threads=num_threads), runtime, note
    except Exception as error:  # LiteRT raises ValueError or RuntimeError for a damaged flatbuffer
        raise ValueError(f"{path}: cannot load the TFLite model: {first_line(error)}") from None


def _tflite(path: str) -> Predictor:
    interpreter, runtime, note = tflite_interpreter(path)
    details = interpreter.get_input_details()
    if len(details) != 1:
        raise ValueError(f"{path}: the TFLite model has {len(details)} inputs; a predictor feeds one input of "
                         f"frames (B, H, W, 3)")
    (inp,) = details
    by_index = {d["index"]: d for d in interpreter.get_output_details()}
    signature = interpreter._get_full_signature_list().get("serving_default")  # name -> tensor index
    if signature and len(signature["outputs"]) == len(by_index):
        named = {DONKEYCAR_OUTPUTS.get(name, name): by_index[index] for name, index in signature["outputs"].items()}
        donkeycar = DONKEYCAR_INPUT in signature["inputs"]
    else:  # no signature (an old converter): the outputs in the interpreter's order
        named = {f"output_{k}": d for k, d in enumerate(by_index.values())}
        donkeycar = False
    if len(named) == 1:
        named = {"steering": next(iter(named.values()))}
    names = _steering_first(named)
    if donkeycar:
        note = "a donkeycar pilot: frames are divided by 255 (donkeycar's normalize_image) before the model"
    state = {"batch": None}

    def run(frames):
        if state["batch"] != len(frames):  # the batch is dynamic: resize once per new batch size
            interpreter.resize_tensor_input(inp["index"], [len(frames), *inp["shape"][1:]])
            interpreter.allocate_tensors()
            state["batch"] = len(frames)
        x = frames.astype(np.float32) / np.float32(255.0) if donkeycar else frames.astype(inp["dtype"], copy=False)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        result = {}
        for name, out in named.items():
            value = interpreter.get_tensor(out["index"])
            scale, zero = out.get("quantization", (0.0, 0))
            if scale:  # an int8 output: dequantize
                value = (value.astype(np.float32) - zero) * scale
            result[name] = value
        return result

    return Predictor(run, tuple(inp["shape"][1:]), runtime, path, note, names)


def _tensorrt(path: str) -> Predictor:
    from deploy.tensorrt import load_engine

    fn, shape, names = load_engine(path)
    return Predictor(fn, shape, "tensorrt", path, output_names=names)
