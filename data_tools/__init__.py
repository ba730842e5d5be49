"""Driving data: readers, checks, augmentation, preprocessing and batching.

Readers and checks load neither TensorFlow nor the augmentation code:
``DrivingDataset`` (Keras) and the ``augment`` and ``preview`` modules are
imported on first use through the module ``__getattr__``.
"""

from __future__ import annotations

import importlib

from data_tools.balance import balance
from data_tools.check import CheckReport, check
from data_tools.errors import DataError
from data_tools.frames import read_frame, write_frame
from data_tools.log import DrivingLog
from data_tools.read import load_log, read_log
from data_tools.smoothing import smooth_steering
from data_tools.tub import read_tub
from data_tools.udacity import read_udacity

__all__ = [
    "CheckReport", "DataError", "DrivingDataset", "DrivingLog", "augment", "load_log", "balance", "check", "preview",
    "read_frame", "read_log", "read_tub", "read_udacity", "smooth_steering", "write_frame",
]

_LAZY_MODULES = ("augment", "preview")


def __getattr__(name: str):
    if name == "DrivingDataset":
        from data_tools.dataset import DrivingDataset

        return DrivingDataset
    if name in _LAZY_MODULES:
        return importlib.import_module(f"data_tools.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
