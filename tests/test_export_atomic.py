"""A failed export leaves the previous artifact byte-identical and no temporary file; load_predictor's clear
errors for ONNX inputs it cannot feed; steering + throttle through every artifact."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deploy import ParityFrames, export, load_predictor, tensorrt
from tests.builders import FRAME, tiny_model


def _sha256(path) -> str:
    if os.path.isdir(path):
        digest = hashlib.sha256()
        for root, _, files in sorted(os.walk(path)):
            for name in sorted(files):
                digest.update(name.encode())
                digest.update(open(os.path.join(root, name), "rb").read())
        return digest.hexdigest()
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _leftovers(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".") or ".tmp" in n)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.keras"
    tiny_model("elu").save(path)
    return path


@pytest.fixture(scope="module")
def huge_output_model(tmp_path_factory):
    """A model whose steering is ~1e4: float16 weights then miss Keras by far more than the fp16 tolerance."""
    import keras

    keras.utils.set_random_seed(0)
    model = tiny_model("elu")
    last = model.layers[-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 3e4 + 1e3, bias + 1e4])
    path = tmp_path_factory.mktemp("huge") / "huge.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("fmt,name", [("onnx", "a.onnx"), ("tflite", "a.tflite"), ("saved_model", "a_sm")])
def test_failing_exports_leave_the_previous_artifact_byte_identical(fmt, name, model_path, tmp_path):
    out = tmp_path / name
    assert export(model_path, fmt, out, parity_frames=2).passed
    before = _sha256(out)
    failures = [
        (dict(opset=3), "--opset: expected an ONNX opset in 11..18"),
        (dict(parity_frames=0), "--frames: expected an integer >= 1"),
        (dict(trt_precision="int4"), "--precision"),
        (dict(frames=np.zeros((0, *FRAME), np.uint8)), "frames: expected a non-empty"),
        (dict(frames=np.zeros((2, *FRAME), np.float32)), "expected uint8"),
        (dict(calibration=str(tmp_path / "absent")), "absent"),
    ]
    for kwargs, message in failures:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            export(model_path, fmt, out, **kwargs)
        assert _sha256(out) == before, kwargs
        assert _leftovers(tmp_path) == [], kwargs
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="broken.keras"):
        export(tmp_path / "broken.keras", fmt, out)
    assert _sha256(out) == before and _leftovers(tmp_path) == []


def test_a_parity_failure_is_reported_and_nothing_is_replaced(model_path, huge_output_model, tmp_path):
    out = tmp_path / "m.tflite"
    assert export(model_path, "tflite-fp16", out, parity_frames=2).passed
    before = _sha256(out)
    report = export(huge_output_model, "tflite-fp16", out, parity_frames=4)
    assert not report.passed and not report.written
    assert report.parity["max_abs_diff"] > report.parity["tolerance"] == 1e-2
    assert "NOT written" in report.summary() and any("unchanged" in n for n in report.notes)
    assert _sha256(out) == before and _leftovers(tmp_path) == []
    # Without a previous file, nothing appears at all.
    fresh = export(huge_output_model, "tflite-fp16", tmp_path / "fresh.tflite", parity_frames=4)
    assert not fresh.passed and not (tmp_path / "fresh.tflite").exists() and _leftovers(tmp_path) == []


def test_caller_frames_drive_the_parity_check(model_path, tmp_path):
    frames = np.random.default_rng(4).integers(0, 256, (3, 20, 40, 3), dtype=np.uint8)  # half size: resized
    report = export(model_path, "onnx", tmp_path / "m.onnx", frames=frames)
    assert report.passed and report.parity["frames"] == 3
    assert "given by the caller" in report.parity["source"] and "resized from 40x20 to 80x40" in report.parity["source"]
    labelled = ParityFrames(frames[:, :, :, :].repeat(2, 1).repeat(2, 2), "my frames", np.zeros(3, np.float32))
    report = export(model_path, "onnx", tmp_path / "m.onnx", frames=labelled)
    assert report.parity["source"] == "my frames" and report.parity["keras_rmse"] is not None


# --- load_predictor on ONNX inputs it cannot feed (hand-built graphs) ----------------------------------------------

def _onnx_model(path, inputs, output_dims=("N", 1)):
    """A graph reducing each input's mean (over all but the batch) into one output ``y``."""
    nodes = [helper.make_node("ReduceMean", [name], [f"m_{name}"], axes=[1, 2, 3], keepdims=0) for name, *_ in inputs]
    nodes.append(helper.make_node("Sum", [f"m_{name}" for name, *_ in inputs], ["s"]))
    nodes.append(helper.make_node("Unsqueeze", ["s", "axes"], ["y"]))
    values = [helper.make_tensor_value_info(name, elem, list(dims)) for name, elem, dims in inputs]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, "g", values, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                  list(output_dims))], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return path


def test_onnx_input_oddities_give_one_clear_line_or_work(tmp_path):
    symbolic = _onnx_model(tmp_path / "symbolic.onnx", [("x", TensorProto.FLOAT, ("N", "H", 8, 3))])
    with pytest.raises(ValueError, match=r"symbolic.onnx: .*symbolic dimensions \['H'\] besides the batch"):
        load_predictor(symbolic)
    two = _onnx_model(tmp_path / "two.onnx", [("a", TensorProto.FLOAT, ("N", 4, 8, 3)),
                                              ("b", TensorProto.FLOAT, ("N", 4, 8, 3))])
    with pytest.raises(ValueError, match=r"two.onnx: the ONNX model has 2 inputs \(a, b\)"):
        load_predictor(two)
    channels_first = _onnx_model(tmp_path / "nchw.onnx", [("x", TensorProto.FLOAT, ("N", 3, 4, 8))])
    with pytest.raises(ValueError, match="nchw.onnx: .*channels-last"):
        load_predictor(channels_first)
    fixed4 = _onnx_model(tmp_path / "fixed4.onnx", [("x", TensorProto.FLOAT, (4, 4, 8, 3))], (4, 1))
    with pytest.raises(ValueError, match="fixed4.onnx: .*fixed batch of 4"):
        load_predictor(fixed4)
    # A fixed batch of 1 is served one frame at a time, with a note.
    one = load_predictor(_onnx_model(tmp_path / "one.onnx", [("x", TensorProto.FLOAT, (1, 4, 8, 3))], (1, 1)))
    assert one.note and "fixed batch of 1" in one.note
    frames = np.random.default_rng(0).integers(0, 256, (5, 4, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(one(frames), frames.reshape(5, -1).mean(1), rtol=1e-5)
    (tmp_path / "corrupt.tflite").write_bytes(b"TFL3" + b"\x00\xff" * 40)
    with pytest.raises(ValueError, match="corrupt.tflite: cannot load the TFLite model") as error:
        load_predictor(tmp_path / "corrupt.tflite")
    assert "\n" not in str(error.value)
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07" + os.urandom(64))
    with pytest.raises(ValueError, match="corrupt.onnx: cannot load the ONNX model") as error:
        load_predictor(tmp_path / "corrupt.onnx")
    assert "\n" not in str(error.value)


# --- steering + throttle --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_head(tmp_path_factory):
    import keras

    from e2e_drive.models import pilotnet

    keras.utils.set_random_seed(0)
    model = pilotnet((66, 200, 3), outputs=("steering", "throttle"), seed=1)
    path = tmp_path_factory.mktemp("two") / "two.keras"
    model.save(path)
    return path, model


@pytest.mark.parametrize("fmt,name", [("onnx", "t.onnx"), ("tflite", "t.tflite"), ("saved_model", "t_sm"),
                                      ("tensorrt", "t.plan")])
def test_two_output_model_keeps_both_outputs_in_every_artifact(fmt, name, two_head, tmp_path):
    path, model = two_head
    report = export(path, fmt, tmp_path / name, parity_frames=4)
    assert report.passed, report.summary()
    assert report.outputs == ["steering", "throttle"] and set(report.parity["outputs"]) == {"steering", "throttle"}
    if fmt == "tensorrt" and not tensorrt.available():
        assert report.path.endswith(".trt.onnx") and report.tensorrt["ok"], report.tensorrt["problems"]
    predictor = load_predictor(report.path)
    assert predictor.output_names == ("steering", "throttle")
    frames = np.random.default_rng(9).integers(0, 256, (3, 66, 200, 3), dtype=np.uint8)
    expected = model.predict(frames, verbose=0)
    got = predictor.predict_outputs(frames)
    for head in ("steering", "throttle"):
        np.testing.assert_allclose(got[head], expected[head].reshape(-1), atol=1e-4)
    np.testing.assert_array_equal(predictor(frames), got["steering"])
    assert np.ptp(expected["throttle"]) > 1e-4 and not np.allclose(expected["throttle"], expected["steering"])
