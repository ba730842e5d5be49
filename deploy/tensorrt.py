"""TensorRT: build and run an engine where TensorRT and a GPU exist; a static check of the ONNX graph everywhere.

The supported-operator list is kept from onnx-tensorrt ``docs/operators.md`` for TensorRT 10.0
(https://github.com/onnx/onnx-tensorrt/blob/release/10.0/docs/operators.md: opsets 9-20, operators marked "Y").
TensorRT 8.x (JetPack 4/5) takes no uint8 network inputs, so the TensorRT export uses an ONNX with a float32
input (frames in [0, 255], cast inside); a uint8 input is flagged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

SOURCE = "onnx-tensorrt docs/operators.md, TensorRT 10.0 (release/10.0): operators marked supported"
SUPPORTED_OPSETS = (9, 20)
TENSORRT_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization BlackmanWindow Cast
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization
LpPool LRN LSTM MatMul MatMulInteger Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Multinomial Neg
NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QLinearConv QLinearMatMul
QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape
Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink
Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze STFT Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
# Types TensorRT 8.x accepts as network inputs (uint8 only from TensorRT 8.5/10 and only through a Cast).
TENSORRT_INPUT_TYPES = {1: "float32", 10: "float16", 6: "int32", 9: "bool", 3: "int8"}


@dataclass
class StaticCheck:
    """Whether TensorRT's ONNX parser can take this graph, judged without TensorRT."""

    ops: dict[str, int]
    unsupported: list[str]
    opset: int
    inputs: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    source: str = SOURCE

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "ops": self.ops, "unsupported": self.unsupported, "opset": self.opset,
                "inputs": self.inputs, "problems": self.problems, "source": self.source}


def static_check(proto) -> StaticCheck:
    """Check an ONNX ModelProto against TensorRT's ONNX parser: ops, opset, input types and static shapes."""
    import collections

    import onnx

    if isinstance(proto, (str, os.PathLike)):
        proto = onnx.load(os.fspath(proto))
    ops = dict(collections.Counter(n.op_type for n in proto.graph.node))
    unsupported = sorted(op for op in ops if op not in TENSORRT_ONNX_OPS)
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    problems = []
    if unsupported:
        problems.append(f"ops TensorRT's ONNX parser does not support: {', '.join(unsupported)}")
    custom = sorted({n.domain for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        problems.append(f"custom op domains need TensorRT plugins: {', '.join(custom)}")
    if not SUPPORTED_OPSETS[0] <= opset <= SUPPORTED_OPSETS[1]:
        problems.append(f"opset {opset} outside TensorRT 10.0's range {SUPPORTED_OPSETS[0]}-{SUPPORTED_OPSETS[1]}")
    initializers = {i.name for i in proto.graph.initializer}
    inputs = []
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        inputs.append({"name": value.name, "dtype": dtype, "shape": dims})
        if tensor.elem_type not in TENSORRT_INPUT_TYPES:
            problems.append(f"input {value.name!r} is {dtype}: TensorRT 8.x takes no {dtype} network inputs "
                            f"(export with --format tensorrt for the float32-input variant)")
        dynamic = [i for i, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
        if any(i != 0 for i in dynamic):
            problems.append(f"input {value.name!r} has dynamic non-batch dims {dims}: TensorRT needs them static")
    return StaticCheck(ops, unsupported, opset, inputs, problems)


def quantize_qdq(proto, frames: np.ndarray):
    """Explicit int8 quantization of a float32-input ONNX graph, calibrated on ``frames`` (uint8 or float, 0..255).

    TensorRT 10 builds int8 engines from QuantizeLinear/DequantizeLinear pairs (its implicit, calibrator-based
    int8 is deprecated) and takes only symmetric int8 scales (zero point 0) and float biases. onnxruntime's ``quantize_static``
    writes them: per-channel weight scales and activation ranges from the calibration frames, for the
    convolutions (PilotNet's MACs are 99.5% convolution). The dense head, the preprocessing and the
    activations stay float for TensorRT to run in fp16: a quantized head would clip the steering of any frame
    steering harder than the calibration frames did.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = proto.graph.input[0].name
    batches = [{name: frame[None].astype(np.float32)} for frame in np.asarray(frames)]
    if not batches:
        raise ValueError("int8 quantization needs calibration frames")

    class Frames(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(batches)

        def get_next(self):
            return next(self._batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "qdq.onnx")
        onnx.save(proto, source)
        quantize_static(source, target, Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"],
                        # TensorRT fuses a float bias; it has no int32 DequantizeLinear for one.
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "QuantizeBias": False})
        return onnx.load(target)


def onnx_path_for(engine_path: str) -> str:
    """Where the TensorRT export writes its float32-input ONNX, next to the engine."""
    return os.path.splitext(os.fspath(engine_path))[0] + ".trt.onnx"


def trtexec_command(onnx_path: str, engine_path: str, frame_shape: Sequence[int], precision: str = "fp16",
                    max_batch: int = 32, input_name: str = "frames", tensorrt_major: int = 10) -> str:
    """The ``trtexec`` line that builds the engine on the target (a Jetson), dynamic batch 1..max_batch.

    TensorRT 10 takes the precision as a flag (``--fp16``, ``--int8``); TensorRT 11 removed those flags and
    builds strongly typed networks only, so its line is ``--stronglyTyped`` and the precision is the ONNX's
    own (``tensorrt11_note`` says what that means for ``precision``).
    """
    h, w, c = (int(d) for d in frame_shape)
    shapes = " ".join(f"--{k}Shapes={input_name}:{b}x{h}x{w}x{c}" for k, b in
                      (("min", 1), ("opt", 1), ("max", max_batch)))
    if tensorrt_major >= 11:
        return f"trtexec --onnx={onnx_path} --saveEngine={engine_path} --stronglyTyped {shapes}"
    flag = {"fp32": "", "fp16": " --fp16", "int8": " --int8 --fp16"}[precision]
    return f"trtexec --onnx={onnx_path} --saveEngine={engine_path}{flag} {shapes}"


def tensorrt11_note(precision: str, command: str) -> str:
    """What building ``precision`` takes on TensorRT 11 (strongly typed networks only)."""
    if precision == "int8":
        how = "the ONNX's explicit Q/DQ nodes carry the int8 precision, which a strongly typed build keeps"
    elif precision == "fp16":
        how = ("this float32 ONNX builds as fp32 there: convert it to float16 first (onnxconverter_common.float16."
               "convert_float_to_float16(model, keep_io_types=True)) for an fp16 engine")
    else:
        how = "fp32 needs no conversion"
    return f"TensorRT 11 has no --fp16/--int8 (strongly typed networks only): {command}; {how}"


# The parity tolerance of an engine by its precision (int8: the RMSE change is reported, not enforced).
ENGINE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": None}


def parity_tolerance(precision: str, engine: bool) -> float | None:
    """What the exported artifact must match the Keras model to: the engine's precision sets it when one is
    built; without TensorRT the float32-input ONNX on onnxruntime is checked, which must match fp32 (an int8 one
    carries Q/DQ nodes: reported, not enforced)."""
    if engine:
        return ENGINE_TOLERANCE[precision]
    return None if precision == "int8" else ENGINE_TOLERANCE["fp32"]


def available() -> bool:
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """Why no engine can be built here, or None when TensorRT, PyCUDA and a CUDA GPU are present."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed"
    try:
        import pycuda.driver as cuda
    except ImportError:
        return "pycuda (used for GPU buffers) is not installed"
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA GPU"
    except cuda.Error as error:
        return f"no usable CUDA GPU ({error})"
    return None


def build_engine(onnx_path: str, engine_path: str, frame_shape: Sequence[int], precision: str = "fp16",
                 calibration: np.ndarray | None = None, max_batch: int = 32) -> str:
    """Build a serialized engine from the ONNX file (TensorRT 10 API), written atomically."""
    import tensorrt as trt  # optional: only where TensorRT is installed

    from data_tools.io import write_bytes

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as handle:
        if not parser.parse(handle.read()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ValueError(f"{onnx_path}: TensorRT cannot parse the ONNX: {errors}")
    config = builder.create_builder_config()
    if precision == "fp32":
        # TensorRT runs fp32 layers in TF32 by default on Ampere and newer, which misses the 1e-4 parity bound.
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        # The int8 export's ONNX carries explicit Q/DQ scales (quantize_qdq): no calibrator is needed.
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    h, w, c = (int(d) for d in frame_shape)
    name = network.get_input(0).name
    profile.set_shape(name, (1, h, w, c), (1, h, w, c), (max_batch, h, w, c))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError(f"{onnx_path}: TensorRT failed to build an engine")
    write_bytes(engine_path, bytes(serialized))
    return engine_path


def load_engine(path: str):
    """A ``(fn, frame_shape, output_names)`` triple running a serialized engine on the GPU (TensorRT 10 tensor
    API, PyCUDA buffers). ``fn`` returns ``{output name: array}``; the names come steering first."""
    reason = unavailable_reason()
    if reason is not None:
        raise ValueError(f"{path}: cannot run a TensorRT engine here: {reason}")
    # The primary context is the one TensorFlow uses too; pycuda.autoinit would make a second one, current
    # only on the importing thread (the drive server calls predictors from its request threads).
    import pycuda.autoprimaryctx
    import pycuda.driver as cuda
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    with open(path, "rb") as handle:
        engine = runtime.deserialize_cuda_engine(handle.read())
    if engine is None:
        raise ValueError(f"{path}: not a TensorRT engine for this TensorRT version/GPU")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    if len(inputs) != 1:
        raise ValueError(f"{path}: the engine has {len(inputs)} inputs; a predictor feeds one input of frames")
    (inp,) = inputs
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    shape = tuple(int(d) for d in engine.get_tensor_shape(inp)[1:])
    cuda_context = pycuda.autoprimaryctx.context
    stream = cuda.Stream()
    max_batch = int(engine.get_tensor_profile_shape(inp, 0)[2][0])

    def run(frames: np.ndarray) -> dict[str, np.ndarray]:
        cuda_context.push()
        try:
            return run_in_context(frames)
        finally:
            cuda_context.pop()

    def run_in_context(frames: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(frames, np.float32)  # the engine's input is the float32 ONNX's
        if not context.set_input_shape(inp, x.shape):  # returns False (does not raise) outside the profile
            raise ValueError(f"{path}: batch {len(x)} is outside the engine's optimization profile 1..{max_batch}")
        x_gpu = cuda.mem_alloc(x.nbytes)
        cuda.memcpy_htod_async(x_gpu, x, stream)
        context.set_tensor_address(inp, int(x_gpu))
        results, buffers = {}, [x_gpu]
        for out in outputs:
            y = np.empty(tuple(context.get_tensor_shape(out)), np.float32)
            y_gpu = cuda.mem_alloc(y.nbytes)
            buffers.append(y_gpu)
            context.set_tensor_address(out, int(y_gpu))
            results[out] = (y, y_gpu)
        context.execute_async_v3(stream.handle)
        for y, y_gpu in results.values():
            cuda.memcpy_dtoh_async(y, y_gpu, stream)
        stream.synchronize()
        if len(outputs) == 1:
            return {"steering": results[outputs[0]][0]}
        return {name: y for name, (y, _) in results.items()}

    output_names = ("steering",) if len(outputs) == 1 else tuple(
        sorted(outputs, key=lambda n: (n != "steering", outputs.index(n))))
    return run, shape, output_names
