"""``read_log``: read any supported driving log, detected by what the path holds."""

from __future__ import annotations

import os
from pathlib import Path

from data_tools.errors import DataError
from data_tools.log import DrivingLog
from data_tools.tub import read_tub_folder
from data_tools.udacity import LOG_NAME, as_paths, check_on_error, read_udacity_csv


def log_kind(path: Path) -> str:
    """``"udacity"`` or ``"tub"``; a ``DataError`` naming what was looked for otherwise."""
    if path.is_file() and path.suffix.lower() == ".csv":
        return "udacity"
    if path.is_dir():
        if (path / LOG_NAME).is_file():
            return "udacity"
        if (path / "manifest.json").is_file():
            return "tub"
        raise DataError(f"not a driving log: the folder has neither {LOG_NAME} (Udacity) nor manifest.json "
                        "(donkeycar tub)", path=str(path))
    if not path.exists():
        raise DataError("no such file or folder", path=str(path))
    raise DataError("not a driving log: expected a folder or a .csv file", path=str(path))


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
        if log_kind(path) == "udacity":
            logs.append(read_udacity_csv(path, recording, on_error))
        else:
            logs.append(read_tub_folder(path, recording, on_error))
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
