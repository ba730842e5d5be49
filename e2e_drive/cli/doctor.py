"""``e2e-drive doctor``: versions, devices and which export formats can be built and run here."""

from __future__ import annotations

import argparse

from deploy.formats import FORMATS
from e2e_drive.cli import add_command
from e2e_drive.cli.output import emit


def register(commands, common: argparse.ArgumentParser) -> None:
    doctor = add_command(
        commands, "doctor", common=common, handler=run_doctor,
        help="what is installed, which devices TensorFlow sees, which exports work here",
        description="Report the Python, TensorFlow, Keras, OpenCV, onnxruntime, LiteRT and TensorRT versions "
        "(or 'not installed'), the devices TensorFlow sees, and for each export format whether it can be built "
        "and run on this machine: a small PilotNet is exported and run for real (a few seconds per format).",
        epilog="examples:\n  e2e-drive doctor\n  e2e-drive doctor --format onnx tflite --json\n"
        "  e2e-drive doctor --no-exports",
    )
    doctor.add_argument("--format", nargs="+", choices=list(FORMATS), metavar="FORMAT", dest="formats",
                        help=f"the export formats to try (default all: {', '.join(FORMATS)})")
    doctor.add_argument("--no-exports", action="store_true", help="versions and devices only")


def run_doctor(args: argparse.Namespace) -> int:
    from deploy.doctor import doctor, format_doctor

    report = doctor(formats=args.formats, check_exports=not args.no_exports)
    emit(args, report, format_doctor(report))
    return 0
