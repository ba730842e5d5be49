"""``e2e-drive doctor``: what is installed here, which devices TensorFlow sees, and which exports work.

Each export format of ``deploy.formats.FORMATS`` is tried for real: a small PilotNet is exported to a
temporary folder with ``deploy.export`` and the artifact is loaded and run by ``deploy.load_predictor``
(that is what the export's parity check does). A format reads ``ok`` only when both happened and parity held;
otherwise the report says which step failed and why, in one line.

Example:
    >>> report = doctor()
    >>> print(format_doctor(report))
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import os
import platform
import sys
import tempfile
import time
from typing import Any, Sequence

from data_tools.errors import first_line
from deploy.formats import FORMATS, get_format

log = logging.getLogger(__name__)

NOT_INSTALLED = "not installed"

# What the report names -> the distributions that provide it (the first one installed counts).
PACKAGES: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
    "keras": ("keras",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "onnx": ("onnx",),
    "tf2onnx": ("tf2onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs"),
}

DOCTOR_FRAME = (40, 80, 3)  # small frames keep the export round trips to seconds


def package_versions() -> dict[str, str]:
    """The installed version of each package the project uses, or ``"not installed"``."""
    versions = {}
    for name, distributions in PACKAGES.items():
        versions[name] = NOT_INSTALLED
        for distribution in distributions:
            try:
                versions[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def devices() -> list[dict[str, str]]:
    """The physical devices TensorFlow sees (``tf.config.list_physical_devices``)."""
    import tensorflow as tf  # heavy: only when the report is asked for

    return [{"name": d.name, "type": d.device_type} for d in tf.config.list_physical_devices()]


def check_format(name: str, model, folder: str) -> dict[str, Any]:
    """Export ``model`` as ``name`` into ``folder`` and run it; what worked, what did not and why."""
    from deploy.export import export

    spec = get_format(name)
    out = os.path.join(folder, f"doctor_{name}{spec.suffix}")
    started = time.perf_counter()
    result: dict[str, Any] = {"format": name, "gpu": spec.gpu, "needs": spec.needs, "built": False, "runs": False,
                              "ok": False, "note": ""}
    try:
        # deploy.export reports its progress with print(); the doctor's output is the report alone.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            report = export(model, name, out, parity_frames=4)
    except Exception as error:  # any failure is the answer for this format, reported in one line
        note = first_line(error)
        result["note"] = note if note == type(error).__name__ else f"{type(error).__name__}: {note}"
        result["seconds"] = round(time.perf_counter() - started, 2)
        return result
    if report.tensorrt is not None and not report.tensorrt.get("engine_built", False):
        # Without TensorRT the export writes and checks the engine's ONNX; the engine itself was not built.
        result["note"] = next((n.split(":")[0] for n in report.notes if n.startswith("TensorRT not available")),
                              "TensorRT engine not built")
        result["note"] += f"; its ONNX {'passes' if report.passed else 'fails'} parity on onnxruntime"
    else:
        result["built"] = os.path.exists(report.path)
        result["runs"] = report.parity.get("max_abs_diff") is not None
        result["ok"] = result["built"] and result["runs"] and report.passed
        if not report.passed:
            result["note"] = f"parity failed: max abs diff {report.parity.get('max_abs_diff')}"
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def doctor(formats: Sequence[str] | None = None, check_exports: bool = True) -> dict[str, Any]:
    """The environment report: Python, package versions, devices and, per export format, whether it works here.

    Args:
        formats: the export formats to try. Defaults to every format of ``deploy.formats.FORMATS``.
        check_exports: try the exports at all (they take a few seconds each). Defaults to `True`.
    """
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": package_versions(),
        "devices": devices(),
        "formats": [],
    }
    if not check_exports:
        return report
    from e2e_drive.models import pilotnet

    names = list(FORMATS) if formats is None else [get_format(name).name for name in formats]
    model = pilotnet(DOCTOR_FRAME, crop=(4, 4), seed=0)
    # Each export traces the parity model again, which TensorFlow warns about; here that is by design.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="e2e_drive_doctor_") as folder:
            for name in names:
                log.info("doctor: trying the %s export", name)
                report["formats"].append(check_format(name, model, folder))
    finally:
        tf_logger.setLevel(level)
    return report


def format_doctor(report: dict[str, Any]) -> str:
    """The report as text for people."""
    lines = [f"Python {report['python']} ({report['executable']})", f"platform: {report['platform']}", "packages:"]
    lines += [f"  {name:<12} {version}" for name, version in report["packages"].items()]
    lines.append("devices (TensorFlow): " + (", ".join(f"{d['type']} {d['name']}" for d in report["devices"])
                                            or "none"))
    if report["formats"]:
        lines.append(f"exports ({DOCTOR_FRAME[1]}x{DOCTOR_FRAME[0]} PilotNet, built and run here):")
        lines.append(f"  {'format':<12} {'built':<6} {'runs':<6} {'ok':<4} note")
        for row in report["formats"]:
            yes = {True: "yes", False: "no"}
            lines.append(f"  {row['format']:<12} {yes[row['built']]:<6} {yes[row['runs']]:<6} {yes[row['ok']]:<4} "
                         f"{row['note']}".rstrip())
    return "\n".join(lines)
