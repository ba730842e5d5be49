"""``--format onnx``: uint8 frames in, dynamic batch, standard ops only (tf2onnx)."""

from __future__ import annotations

import collections

from data_tools.io import atomic_path
from deploy.formats.base import ExportError, ExportFormat, ExportJob, Written, write_bytes
from deploy.formats.serving import serving_function

DEFAULT_OPSET = 17
# Opsets tf2onnx 1.17 writes (tf2onnx.constants.OPSET_TO_IR_VERSION ends at 18) that hold our graphs
# (Resize with the modes FramePreprocess uses needs opset 11).
ONNX_OPSETS = (11, 18)


def export_onnx_proto(model, opset: int = DEFAULT_OPSET, input_dtype: str = "uint8"):
    """The model as an ONNX ModelProto: dynamic batch, standard ops, ``input_dtype`` frames in, one output
    per model output (``steering``, ``throttle``)."""
    import tf2onnx  # optional dependency, heavy

    serve, spec = serving_function(model, input_dtype)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    custom = sorted({f"{n.domain}:{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise ExportError(f"ONNX export needs non-standard ops {custom}; they would not run on onnxruntime/TensorRT")
    return proto


def onnx_ops(proto) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in proto.graph.node))


def write(job: ExportJob) -> Written:
    proto = export_onnx_proto(job.model, job.opset)
    with atomic_path(job.out, job.verify) as tmp:
        write_bytes(tmp, proto.SerializeToString())
    return Written(onnx_ops(proto), job.out)


FORMAT = ExportFormat("onnx", ".onnx", "tf2onnx, onnxruntime", False, 1e-4,
                      "ONNX, uint8 input, dynamic batch, standard ops only", write)
