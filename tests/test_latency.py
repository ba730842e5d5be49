"""e2e_drive.bench.latency: MAC counting against hand-computed values, and the side-by-side benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy import export
from e2e_drive.bench.latency import bench_latency, format_latency, matmul_rate, onnx_macs
from tests.builders import tiny_model


def test_onnx_macs_of_conv_and_matmul_match_the_formula():
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((16, 3, 5, 5)).astype(np.float32), "w")
    dense = numpy_helper.from_array(rng.standard_normal((16 * 14 * 14, 10)).astype(np.float32), "d")
    shape = numpy_helper.from_array(np.array([-1, 16 * 14 * 14], np.int64), "s")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2]),
         helper.make_node("Reshape", ["c", "s"], ["f"]),
         helper.make_node("MatMul", ["f", "d"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], initializer=[weight, dense, shape])
    result = onnx_macs(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    conv = 16 * 14 * 14 * (3 * 5 * 5)  # output elements x (Cin x kh x kw); (32 - 5) // 2 + 1 = 14
    assert result == {"macs": conv + 16 * 14 * 14 * 10, "flops": 2 * (conv + 16 * 14 * 14 * 10), "unknown_nodes": []}


def test_exported_keras_model_macs_match_its_layers(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((20, 24, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2)(x)  # -> (9, 11, 6)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(1)(keras.layers.Dense(5)(x))
    keras.Model(inputs, outputs).save(tmp_path / "k.keras")
    report = export(tmp_path / "k.keras", "onnx", tmp_path / "k.onnx", parity_frames=2)
    expected = 9 * 11 * 6 * (3 * 3 * 3) + 9 * 11 * 6 * 5 + 5 * 1
    assert onnx_macs(report.path)["macs"] == expected


def test_matmul_rate_is_a_positive_measurement():
    rate = matmul_rate(size=128, runs=3)
    assert rate["size"] == 128 and rate["onnxruntime_gflops"] > 0 and rate["numpy_gflops"] > 0


def test_bench_latency_side_by_side_and_cli_json(tmp_path, capsys):
    from e2e_drive.cli import main

    tiny_model("elu", "keras").save(tmp_path / "m.keras")
    export(tmp_path / "m.keras", "onnx", tmp_path / "m.onnx", parity_frames=2)
    export(tmp_path / "m.keras", "tflite", tmp_path / "m.tflite", parity_frames=2)
    artifacts = [str(tmp_path / n) for n in ("m.onnx", "m.tflite", "m.keras")]
    report = bench_latency(artifacts, runs=5, batch=4)
    assert [r["runtime"] for r in report["artifacts"]] == ["onnxruntime", "litert", "keras"]
    for row in report["artifacts"]:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["throughput_fps"] > 0 and row["x_floor"] > 0
    assert report["artifacts"][0]["vs_first"] == 1.0
    assert report["cpu_floor"]["macs"] == onnx_macs(tmp_path / "m.onnx")["macs"] > 0
    assert "CPU floor" in format_latency(report)
    assert main(["bench", "latency", artifacts[0], "--runs", "3", "--batch", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["artifacts"][0]["artifact"] == artifacts[0]
    with pytest.raises(FileNotFoundError):
        bench_latency([str(tmp_path / "absent.onnx")])
