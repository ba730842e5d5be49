"""The registry of export formats, one module each: it drives ``deploy.export``, ``e2e-drive doctor`` and ``--help``.

A new format is one module declaring an ``ExportFormat`` (its ``write`` makes the artifact) and one line here.
"""

from __future__ import annotations

from deploy.formats import donkeycar, onnx, saved_model, tensorrt, tflite
from deploy.formats.base import ExportError, ExportFormat, ExportJob, Written

FORMATS: dict[str, ExportFormat] = {
    f.name: f for f in (saved_model.FORMAT, onnx.FORMAT, *tflite.FORMATS, tensorrt.FORMAT, donkeycar.FORMAT)
}

__all__ = ["FORMATS", "ExportError", "ExportFormat", "ExportJob", "Written", "formats_help", "get_format"]


def get_format(name: str) -> ExportFormat:
    """The format called ``name``; a ValueError listing the known ones otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown export format {name!r}; expected one of: {', '.join(FORMATS)}") from None


def formats_help() -> str:
    """The table as text, for ``e2e-drive export --help``."""
    lines = ["formats:", f"  {'name':<12} {'suffix':<8} {'GPU':<4} {'parity tol':<10} needs / what"]
    for f in FORMATS.values():
        tol = "RMSE" if f.tolerance is None else f"{f.tolerance:g}"
        lines.append(f"  {f.name:<12} {f.suffix or '(dir)':<8} {'yes' if f.gpu else 'no':<4} {tol:<10} "
                     f"{f.needs}: {f.description}")
    return "\n".join(lines)
