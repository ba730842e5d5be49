"""deploy.tensorrt: the static check TensorRT's ONNX parser would apply, and the trtexec command."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deploy import export, load_predictor, tensorrt
from tests.builders import FRAME, tiny_model


def _graph(op: str, input_type=TensorProto.FLOAT, dims=("N", 4, 4, 3), domain: str = "", opset: int = 17):
    node = helper.make_node(op, ["x"], ["y"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", input_type, list(dims))],
                              [helper.make_tensor_value_info("y", input_type, list(dims))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_supported_graph_passes_and_each_problem_is_named():
    assert tensorrt.static_check(_graph("Relu")).ok
    check = tensorrt.static_check(_graph("BitShift"))  # "N" in onnx-tensorrt's operators.md
    assert not check.ok and check.unsupported == ["BitShift"]
    assert "BitShift" in check.problems[0]
    uint8 = tensorrt.static_check(_graph("Relu", input_type=TensorProto.UINT8))
    assert any("uint8" in p and "float32-input" in p for p in uint8.problems)
    dynamic = tensorrt.static_check(_graph("Relu", dims=("N", "H", 4, 3)))
    assert any("dynamic non-batch" in p for p in dynamic.problems)
    assert any("opset 21" in p for p in tensorrt.static_check(_graph("Relu", opset=21)).problems)
    assert any("plugins" in p for p in tensorrt.static_check(_graph("Relu", domain="com.example")).problems)


def test_kept_list_covers_pilotnet_ops_and_excludes_known_unsupported():
    for op in ("Conv", "MatMul", "Gemm", "Elu", "PRelu", "Relu", "LeakyRelu", "Resize", "Cast", "Slice", "ReduceMax"):
        assert op in tensorrt.TENSORRT_ONNX_OPS
    for op in ("BitShift", "StringNormalizer", "TfIdfVectorizer", "Bernoulli"):
        assert op not in tensorrt.TENSORRT_ONNX_OPS
    assert "onnx-tensorrt" in tensorrt.SOURCE and "10.0" in tensorrt.SOURCE


def test_trtexec_command():
    assert tensorrt.trtexec_command("m.trt.onnx", "m.plan", (160, 320, 3), "fp16") == (
        "trtexec --onnx=m.trt.onnx --saveEngine=m.plan --fp16 --minShapes=frames:1x160x320x3 "
        "--optShapes=frames:1x160x320x3 --maxShapes=frames:32x160x320x3")
    assert "--int8" in tensorrt.trtexec_command("a.onnx", "a.plan", (66, 200, 3), "int8")
    # TensorRT 11 removed the precision flags: strongly typed networks only.
    eleven = tensorrt.trtexec_command("m.trt.onnx", "m.plan", (160, 320, 3), "fp16", tensorrt_major=11)
    assert eleven == ("trtexec --onnx=m.trt.onnx --saveEngine=m.plan --stronglyTyped --minShapes=frames:1x160x320x3 "
                      "--optShapes=frames:1x160x320x3 --maxShapes=frames:32x160x320x3")
    assert "convert_float_to_float16" in tensorrt.tensorrt11_note("fp16", eleven)
    assert "Q/DQ" in tensorrt.tensorrt11_note("int8", eleven)


def test_tensorrt_export_without_tensorrt_writes_float_onnx_that_passes_the_check(tmp_path):
    if tensorrt.available():
        pytest.skip("TensorRT is installed: the engine path runs instead")
    path = tmp_path / "m.keras"
    model = tiny_model("all", "reference")
    model.save(path)
    report = export(path, "tensorrt", tmp_path / "m.plan", parity_frames=4)
    assert report.passed and report.path == str(tmp_path / "m.trt.onnx")
    assert not (tmp_path / "m.plan").exists()
    info = report.tensorrt
    assert info["engine_built"] is False and info["ok"], info["problems"]
    (inp,) = info["inputs"]
    assert inp["dtype"] == "float32" and inp["shape"][1:] == list(FRAME)
    assert not isinstance(inp["shape"][0], int)  # the batch stays dynamic: trtexec's min/opt/max shapes set it
    assert info["trtexec"].startswith(f"trtexec --onnx={tmp_path / 'm.trt.onnx'} --saveEngine={tmp_path / 'm.plan'}")
    assert any("TensorRT not available" in n and "trtexec" in n for n in report.notes)
    assert "--stronglyTyped" in info["trtexec_tensorrt11"] and "--fp16" not in info["trtexec_tensorrt11"]
    assert any(n.startswith("TensorRT 11 has no --fp16/--int8") for n in report.notes)
    proto = onnx.load(report.path)
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    # The float input takes the same 0..255 frames: a uint8 batch through the predictor equals Keras.
    frames = np.random.default_rng(2).integers(0, 256, size=(3, *FRAME), dtype=np.uint8)
    np.testing.assert_allclose(load_predictor(report.path)(frames), model.predict(frames, verbose=0).reshape(-1),
                               atol=1e-4)
    # The default (uint8) ONNX is what the check flags for TensorRT 8.
    uint8_report = export(path, "onnx", tmp_path / "m.onnx", parity_frames=2)
    assert any("uint8" in p for p in tensorrt.static_check(uint8_report.path).problems)


def test_tensorrt_int8_export_writes_symmetric_qdq_onnx_calibrated_on_the_frames(tmp_path):
    if tensorrt.available():
        pytest.skip("TensorRT is installed: the engine path runs instead")
    from onnx import numpy_helper

    path = tmp_path / "m.keras"
    model = tiny_model("elu", "keras")
    model.save(path)
    report = export(path, "tensorrt", tmp_path / "m.plan", parity_frames=8, trt_precision="int8")
    assert report.passed and report.parity["tolerance"] is None  # int8 is reported, not held to a tolerance
    assert report.tensorrt["ok"], report.tensorrt["problems"]
    assert " --int8 " in report.tensorrt["trtexec"]
    assert any(n.startswith("int8: explicit Q/DQ quantization") for n in report.notes)
    proto = onnx.load(report.path)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= ops.count("QuantizeLinear")
    # TensorRT takes symmetric int8 only: every zero point is an int8 zero.
    initializers = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    zero_points = [initializers[n.input[2]] for n in proto.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    # Quantized, yet close to Keras on frames like the calibration ones (other simulator frames).
    from deploy.parity import load_frames

    frames = load_frames(None, FRAME, count=6, seed=5).frames
    expected = model.predict(frames, verbose=0).reshape(-1)
    got = load_predictor(report.path)(frames)
    assert 0 < np.abs(got - expected).max() < 0.1
