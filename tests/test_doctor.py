"""``e2e-drive doctor``: versions from the installed distributions, devices from TensorFlow, real export tries."""

from __future__ import annotations

import importlib.metadata
import json
import platform

from deploy.doctor import NOT_INSTALLED, doctor, format_doctor, package_versions
from e2e_drive.cli import main


def _installed(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def test_versions_are_those_of_the_installed_distributions():
    import cv2
    import keras
    import tensorflow as tf

    versions = package_versions()
    assert versions["tensorflow"] == tf.__version__
    assert versions["keras"] == keras.__version__
    assert versions["opencv"].startswith(cv2.__version__.split("-")[0].rsplit(".", 1)[0])
    assert versions["onnxruntime"] == _installed("onnxruntime")
    assert versions["litert"] == _installed("ai-edge-litert")
    # TensorRT is not installed on the CI machine; where it is, its version is reported.
    assert versions["tensorrt"] in (NOT_INSTALLED, _installed("tensorrt"))


def test_doctor_json_without_exports_lists_devices(capsys):
    import tensorflow as tf

    assert main(["doctor", "--no-exports", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["python"] == platform.python_version()
    assert {(d["name"], d["type"]) for d in report["devices"]} == {
        (d.name, d.device_type) for d in tf.config.list_physical_devices()}
    assert any(d["type"] == "CPU" for d in report["devices"]) and report["formats"] == []


def test_doctor_builds_and_runs_onnx_and_explains_tensorrt():
    report = doctor(formats=["onnx", "tensorrt"])
    rows = {row["format"]: row for row in report["formats"]}
    assert rows["onnx"]["built"] and rows["onnx"]["runs"] and rows["onnx"]["ok"] and rows["onnx"]["note"] == ""
    from deploy import tensorrt

    if not tensorrt.available():
        assert not rows["tensorrt"]["built"] and not rows["tensorrt"]["ok"]
        assert rows["tensorrt"]["note"].startswith("TensorRT not available here")
    text = format_doctor(report)
    assert "onnx" in text and "tensorrt" in text and "packages:" in text
