"""What every export format shares: its declaration, the job it is handed and what it reports back.

A format module (``deploy/formats/<name>.py``, the way Keras keeps ``keras/src/export/``) declares an
``ExportFormat`` whose ``write`` turns an ``ExportJob`` into the artifact. ``deploy.export`` owns the rest:
argument checks, the parity frames, folding, and the temporary path that is verified before it is moved into place.
Nothing here imports TensorFlow: the table is read by ``--help``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable


class ExportError(ValueError):
    """An export that could not be completed; the previous artifact (if any) is unchanged."""


@dataclass
class ExportJob:
    """One export, as a format's ``write`` sees it.

    Args:
        model: the model to convert (preprocessing already folded when asked).
        out: where the artifact goes (a folder for saved_model).
        verify: called with a temporary path holding the artifact; raises when it does not match Keras.
        opset: the ONNX opset.
        trt_precision: "fp32", "fp16" or "int8" (TensorRT).
        throttle: the constant a steering-only donkeycar pilot returns.
        calibration_frames: int8 calibration frames (``deploy.parity.ParityFrames``).
        notes: lines for the report; a format appends what the user should know.
    """

    model: Any
    out: str
    verify: Callable[[str], None]
    opset: int
    trt_precision: str
    throttle: float
    calibration_frames: Any
    notes: list[str] = field(default_factory=list)

    @property
    def output_names(self) -> tuple[str, ...]:
        from e2e_drive.models import output_names

        return output_names(self.model)


@dataclass
class Written:
    """What a format wrote: the op counts of the graph, the artifact's path and format-specific details."""

    ops: dict[str, int]
    artifact: str
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExportFormat:
    """One export target.

    Args:
        name: the ``--format`` value.
        suffix: the artifact's file suffix ("" for a directory).
        needs: the Python package (or data) the export needs beyond TensorFlow.
        gpu: whether building or running the artifact needs an NVIDIA GPU.
        tolerance: the max abs steering difference to Keras that passes parity
            (``None``: reported, not enforced, e.g. int8 where the RMSE change is reported).
        description: one line for ``--help``.
        write: makes the artifact of a job (imports its converter when called).
        tolerance_for: the tolerance for a TensorRT precision, where it depends on it (else ``tolerance``).
    """

    name: str
    suffix: str
    needs: str
    gpu: bool
    tolerance: float | None
    description: str
    write: Callable[[ExportJob], Written]
    tolerance_for: Callable[[str], float | None] | None = None

    def parity_tolerance(self, trt_precision: str) -> float | None:
        return self.tolerance if self.tolerance_for is None else self.tolerance_for(trt_precision)


def write_bytes(path: str, data: bytes) -> None:
    """Fill a temporary path that ``atomic_path`` handed out (it moves the file into place), synced to disk."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
