"""Driving data: readers, checks, augmentation, preprocessing and batching.

``DrivingDataset`` (which needs Keras) is imported on first use, so reading
and checking logs does not load TensorFlow.
"""

from data_tools.balance import balance
from data_tools.check import CheckReport, check
from data_tools.errors import DataError
from data_tools.frames import read_frame, write_frame
from data_tools.log import DrivingLog
from data_tools.read import read_log
from data_tools.smoothing import smooth_steering
from data_tools.tub import read_tub
from data_tools.udacity import read_udacity

__all__ = [
    "CheckReport", "DataError", "DrivingDataset", "DrivingLog", "balance", "check", "read_frame", "read_log",
    "read_tub", "read_udacity", "smooth_steering", "write_frame",
]


def __getattr__(name: str):
    if name == "DrivingDataset":
        from data_tools.dataset import DrivingDataset

        return DrivingDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
