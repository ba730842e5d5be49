"""deploy.export: every format keeps the in-model preprocessing and every custom layer, checked against Keras."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

keras = pytest.importorskip("keras")

from custom_layers import APL, ELU, Maxout, PReLU, ReferenceConv2D, RReLU  # noqa: E402
from data_tools.frame_preprocess import FramePreprocess  # noqa: E402
from deploy import FORMATS, export, load_predictor  # noqa: E402
from deploy.parity import load_frames  # noqa: E402

from tests.builders import FRAME, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def every_layer_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "every_layer.keras"
    tiny_model("all", "reference").save(path)
    return str(path)


def _keras_steering(path: str, frames: np.ndarray) -> np.ndarray:
    from deploy.predictor import load_keras_model

    return load_keras_model(path).predict(frames, verbose=0).reshape(-1)


@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "tflite", "tflite-fp16", "tflite-int8", "tensorrt"])
def test_every_format_keeps_preprocessing_and_custom_layers(fmt, every_layer_path, tmp_path):
    suffix = FORMATS[fmt].suffix
    out = tmp_path / f"model{suffix}"
    report = export(every_layer_path, fmt, out, parity_frames=8)
    assert report.passed, report.summary()
    artifact = report.path
    assert os.path.exists(artifact) and report.size_bytes > 0
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")], "temporary files left behind"
    assert sum(report.ops.values()) > 5
    # Independent check: the artifact, loaded fresh, against Keras' own predict on frames the export never saw.
    frames = np.random.default_rng(7).integers(0, 256, size=(5, *FRAME), dtype=np.uint8)
    expected = _keras_steering(every_layer_path, frames)
    got = load_predictor(artifact)(frames)
    tolerance = {"tflite-fp16": 1e-2, "tflite-int8": 0.1}.get(fmt, 1e-4)
    np.testing.assert_allclose(got, expected, atol=tolerance)
    assert abs(report.parity["max_abs_diff"]) <= tolerance
    json.dumps(report.to_dict())  # the --json payload is plain JSON


def test_onnx_is_standard_ops_with_dynamic_batch_and_uint8_input(every_layer_path, tmp_path):
    report = export(every_layer_path, "onnx", tmp_path / "m.onnx", opset=15, parity_frames=4)
    proto = onnx.load(report.path)
    onnx.checker.check_model(proto)
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {15}
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == list(FRAME)
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert report.ops == {op: sum(n.op_type == op for n in proto.graph.node) for op in report.ops}
    session = ort.InferenceSession(report.path, providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(3).integers(0, 256, size=(3, *FRAME), dtype=np.uint8)
    (out,) = session.run(None, {inp.name: frames})
    np.testing.assert_allclose(out.reshape(-1), _keras_steering(every_layer_path, frames), atol=1e-4)


from e2e_drive.models import ACTIVATIONS, CONVS, pilotnet

VARIANTS = [(a, c) for c in CONVS for a in ACTIVATIONS]


@pytest.mark.parametrize("activation,conv", VARIANTS)
def test_each_activation_and_conv_variant_survives_onnx_and_tflite(activation, conv, tmp_path):
    model = _variant_model(activation, conv)
    path = tmp_path / "variant.keras"
    model.save(path)
    frames = load_frames(None, model.input_shape[1:], count=4).frames  # simulator frames
    expected = model.predict(frames, verbose=0).reshape(-1)
    assert np.ptp(expected) > 1e-3  # frames steer differently: a 1e-4 match means something
    for fmt, out in (("onnx", "v.onnx"), ("tflite", "v.tflite")):
        report = export(path, fmt, tmp_path / out, parity_frames=4)
        assert report.passed, report.summary()
        np.testing.assert_allclose(load_predictor(tmp_path / out)(frames), expected, atol=1e-4)


def _variant_model(activation: str, conv: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    return pilotnet(input_shape=FRAME, activation=activation, conv=conv)


def _udacity_log(folder):
    """The real log as a DrivingLog, read with the csv module (column 0: centre image, column 3: steering)."""
    import csv

    from data_tools.log import DrivingLog

    with open(folder / "driving_log.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    centre = [str(folder / "IMG" / row[0].replace("\\", "/").split("/")[-1]) for row in rows]
    return DrivingLog.from_columns(center=centre, steering=[float(r[3]) for r in rows],
                                   source=str(folder / "driving_log.csv"), row=range(1, len(rows) + 1))


def test_full_size_int8_export_calibrated_on_the_real_udacity_log(udacity_sim_a, tmp_path):
    model_path = tmp_path / "full.keras"
    model = tiny_model("elu", "keras", frame=(160, 320, 3))
    model.save(model_path)
    log = _udacity_log(udacity_sim_a)
    report = export(model_path, "tflite-int8", tmp_path / "full_int8.tflite", calibration=log, parity_frames=48)
    assert report.parity["frames"] == 48 and "center-camera frames" in report.parity["source"]
    assert report.parity["max_abs_diff"] < 0.1, report.summary()
    assert "QUANTIZE" in report.ops and "CONV_2D" in report.ops
    # The RMSE change against the recorded steering, recomputed here from Keras and the artifact.
    data = load_frames(log, (160, 320, 3), count=48)
    labels = data.steering.astype(np.float64)
    keras_rmse = np.sqrt(np.mean((model.predict(data.frames, verbose=0).reshape(-1) - labels) ** 2))
    int8_rmse = np.sqrt(np.mean((load_predictor(report.path)(data.frames) - labels) ** 2))
    assert report.parity["keras_rmse"] == pytest.approx(keras_rmse, abs=1e-5)
    assert report.parity["rmse_change"] == pytest.approx(int8_rmse - keras_rmse, abs=1e-5)
    assert "RMSE" in report.summary()
    # The folder itself works too (data_tools.read_log, or its IMG/ folder until the readers exist), and the
    # int8 artifact is smaller than the float32 one: the weights really are quantized.
    fp32 = export(model_path, "tflite", tmp_path / "full.tflite", calibration=str(udacity_sim_a), parity_frames=4)
    assert fp32.passed and str(udacity_sim_a) in fp32.parity["source"]
    assert report.size_bytes < fp32.size_bytes


def test_saved_model_reexport_replaces_the_directory(every_layer_path, tmp_path):
    out = tmp_path / "sm"
    export(every_layer_path, "saved_model", out, parity_frames=2)
    (out / "stale.txt").write_text("from an older export")
    report = export(every_layer_path, "saved_model", out, parity_frames=2)
    assert report.passed and not (out / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["sm"]


def test_bad_requests_fail_with_one_clear_line(every_layer_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export(tmp_path / "missing.keras", "onnx", tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="unknown export format 'pt'.*onnx"):
        export(every_layer_path, "pt", tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"should end with \.onnx"):
        export(every_layer_path, "onnx", tmp_path / "m.tflite")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        export(every_layer_path, "onnx", tmp_path / "m.onnx", calibration=str(tmp_path / "nowhere"))
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras: cannot load the Keras model"):
        export(tmp_path / "broken.keras", "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_json_and_image_folder_calibration(every_layer_path, tmp_path, capsys):
    from data_tools.frames import write_frame
    from e2e_drive.cli import main

    images = tmp_path / "frames"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):
        write_frame(images / f"f{k}.png", rng.integers(0, 256, size=FRAME, dtype=np.uint8))
    out = tmp_path / "cli.onnx"
    code = main(["export", every_layer_path, "--format", "onnx", "--out", str(out), "--calibration", str(images),
                 "--frames", "6", "--json"])
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert code == 0 and payload["passed"] and payload["path"] == str(out)
    assert payload["parity"]["frames"] == 6 and str(images) in payload["parity"]["source"]
    assert payload["parity"]["max_abs_diff"] <= 1e-4 and payload["outputs"] == ["steering"]
    assert main(["export", every_layer_path, "--format", "onnx", "--out", str(tmp_path / "x.onnx"),
                 "--calibration", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_a_format_is_one_module_declaring_an_export_format(every_layer_path, tmp_path, monkeypatch):
    # A format added to the registry is exported, verified against Keras and listed, with no other change:
    # here a .keras copy that load_predictor runs with Keras (an independent runtime path from the others).
    from deploy.formats import FORMATS as REGISTRY
    from deploy.formats import ExportFormat, Written, formats_help
    from data_tools.io import atomic_path

    def write(job):
        with atomic_path(job.out, job.verify) as tmp:
            job.model.save(tmp + ".keras")
            os.replace(tmp + ".keras", tmp)
        return Written({"keras layers": len(job.model.layers)}, job.out)

    monkeypatch.setitem(REGISTRY, "keras-copy", ExportFormat("keras-copy", ".keras", "keras", False, 1e-5,
                                                             "the model as a .keras file", write))
    assert "keras-copy" in formats_help()
    report = export(every_layer_path, "keras-copy", tmp_path / "copy.keras", parity_frames=4, fold=False)
    assert report.passed and report.ops["keras layers"] > 3, report.summary()
    frames = np.random.default_rng(3).integers(0, 256, size=(3, *FRAME), dtype=np.uint8)
    np.testing.assert_allclose(load_predictor(report.path)(frames), _keras_steering(every_layer_path, frames),
                               atol=1e-5)

    # Its verify step still guards the previous file: a write that returns different weights is refused.
    before = (tmp_path / "copy.keras").read_bytes()

    def write_other(job):
        other = keras.models.clone_model(job.model)  # fresh initial weights: not the model asked for
        with atomic_path(job.out, job.verify) as tmp:
            other.save(tmp + ".keras")
            os.replace(tmp + ".keras", tmp)
        return Written({}, job.out)

    monkeypatch.setitem(REGISTRY, "keras-copy", ExportFormat("keras-copy", ".keras", "keras", False, 1e-5,
                                                             "the model as a .keras file", write_other))
    failed = export(every_layer_path, "keras-copy", tmp_path / "copy.keras", parity_frames=4, fold=False)
    assert not failed.passed and not failed.written
    assert (tmp_path / "copy.keras").read_bytes() == before
