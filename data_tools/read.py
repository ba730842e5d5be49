"""``read_log``: read any supported driving log, detected by what the path holds."""

from __future__ import annotations

import os
from pathlib import Path

from data_tools.errors import DataError
from data_tools.log import DrivingLog
from data_tools.log_formats import format_of_path
# The readers register their formats (data_tools.log_formats) on import.
from data_tools import tub as _tub, tub_v1 as _tub_v1, udacity as _udacity  # noqa: F401
from data_tools.udacity import as_paths, check_on_error


def read_log(path_or_paths, on_error: str = "raise") -> DrivingLog:
    """Read Udacity logs (folder or CSV) and donkeycar tubs, merged into one ``DrivingLog``.

    Each path becomes its own recording (time order is kept within it).

    Args:
        path_or_paths: one path or several, of any supported kind.
        on_error: ``"raise"`` or ``"skip"`` (see ``read_udacity``). Defaults to `"raise"`.
    """
    check_on_error(on_error)
    logs = []
    for recording, path in enumerate(as_paths(path_or_paths)):
        logs.append(format_of_path(path).read(path, recording, on_error))
    return DrivingLog.concat(logs)


def load_log(data, on_error: str = "raise") -> DrivingLog:
    """The one log loader: a ``DrivingLog`` as it is, or paths (Udacity folders/CSVs, tubs) read with ``read_log``.

    Raises:
        DataError: no path given, a path that is no log, or a log with no usable row.
    """
    if isinstance(data, DrivingLog):
        log = data
    else:
        if data is None or (not isinstance(data, (str, os.PathLike)) and not list(data)):
            raise DataError("no data given: pass at least one Udacity folder, driving_log.csv or tub", path="DATA")
        log = read_log(data, on_error=on_error)
    if len(log) == 0:
        raise DataError("the driving log has no usable rows", path=str(log.source[0]) if len(log.source) else "DATA")
    return log
