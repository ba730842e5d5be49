"""``--format tensorrt``: a float32-input ONNX and, where TensorRT runs, the engine built from it.

Without TensorRT the float32 ONNX, checked on onnxruntime, is the artifact, with the trtexec command that builds
the engine on the target (``deploy.tensorrt`` holds the static check, the commands and the builder).
"""

from __future__ import annotations

from data_tools.io import atomic_path
from deploy import tensorrt as engines
from deploy.formats.base import ExportFormat, ExportJob, Written, write_bytes
from deploy.formats.onnx import export_onnx_proto, onnx_ops


def tolerance(precision: str) -> float | None:
    return engines.parity_tolerance(precision, engine=engines.available())


def write(job: ExportJob) -> Written:
    model, out, precision, notes = job.model, job.out, job.trt_precision, job.notes
    shape = model.input_shape[1:]
    onnx_path = engines.onnx_path_for(out)
    # TensorRT takes no uint8 network inputs: this ONNX takes float32 frames in [0, 255] and casts inside.
    proto = export_onnx_proto(model, job.opset, input_dtype="float32")
    calibration = job.calibration_frames
    if precision == "int8":
        proto = engines.quantize_qdq(proto, calibration.frames)
        notes.append(f"int8: explicit Q/DQ quantization (symmetric, per-channel weights) calibrated on "
                     f"{len(calibration.frames)} other frames ({calibration.source})")
    check = engines.static_check(proto)
    info = check.to_dict()
    info["onnx"] = onnx_path
    info["trtexec"] = engines.trtexec_command(onnx_path, out, shape, precision)
    info["trtexec_tensorrt11"] = engines.trtexec_command(onnx_path, out, shape, precision, tensorrt_major=11)
    notes.append(engines.tensorrt11_note(precision, info["trtexec_tensorrt11"]))
    ops = onnx_ops(proto)
    if not check.ok:
        notes.append("TensorRT static check FAILED: " + "; ".join(check.problems))
    if engines.available():
        with atomic_path(onnx_path) as onnx_tmp:
            write_bytes(onnx_tmp, proto.SerializeToString())
            with atomic_path(out, job.verify) as engine_tmp:
                engines.build_engine(onnx_tmp, engine_tmp, shape, precision,
                                     calibration.frames if precision == "int8" else None)
        info["engine_built"] = True
        return Written(ops, out, info)
    with atomic_path(onnx_path, job.verify) as tmp:
        write_bytes(tmp, proto.SerializeToString())
    info["engine_built"] = False
    notes.append(f"TensorRT not available here ({engines.unavailable_reason()}): wrote the float32-input ONNX "
                 f"{onnx_path}, checked its ops statically; parity below is that ONNX on onnxruntime. "
                 f"Build the engine on the target with: {info['trtexec']}")
    return Written(ops, onnx_path, info)


FORMAT = ExportFormat("tensorrt", ".plan", "tensorrt + NVIDIA GPU", True, 1e-2,
                      "TensorRT engine from a float32-input ONNX; without TensorRT: static check + trtexec command",
                      write, tolerance_for=tolerance)
