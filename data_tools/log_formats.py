"""The registry of driving-log formats: how each is recognised, read, and named in messages.

Each reader module registers its format (``register_format``) when it is imported; ``format_of_path`` is the one
sniffer that tells what a path holds and ``format_of_source`` what kind of file a row came from. Adding a format
is one reader module with one ``LogFormat`` in it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from data_tools.errors import DataError


@dataclass(frozen=True)
class LogFormat:
    """A driving-log format.

    Args:
        name: what the format is called (``"udacity"``, ``"tub"``).
        title: its name in messages (``"Udacity"``, ``"donkeycar tub"``).
        marker: the file a folder of this format holds (``driving_log.csv``, ``manifest.json``).
        source_suffix: how the file a row came from ends (``.csv``, ``.catalog``): the format of a row's source.
        record: what one row is called in messages (``"row"``, ``"record"``).
        car: the car profile its logs are driven with unless told otherwise (``e2e_drive.replay.profiles``).
        read: ``read(path, recording, on_error) -> DrivingLog`` of one folder (or file).
        reads_files: whether a path to a file of ``source_suffix`` is itself a log (a Udacity CSV).
        source_pattern: a regular expression the source's file name matches in full, where the suffix alone
            would claim other files (``record_12.json`` of a tub v1, not any ``.json``).
    """

    name: str
    title: str
    marker: str
    source_suffix: str
    record: str
    car: str
    read: Callable
    reads_files: bool = False
    source_pattern: str | None = None

    def is_source(self, name: str) -> bool:
        """Whether a file of this name holds this format's rows."""
        name = os.path.basename(str(name))
        if self.source_pattern is not None:
            return re.fullmatch(self.source_pattern, name) is not None
        return name.lower().endswith(self.source_suffix)

    def recognises(self, path: Path) -> bool:
        if path.is_dir():
            return (path / self.marker).is_file()
        return self.reads_files and path.is_file() and path.suffix.lower() == self.source_suffix


FORMATS: dict[str, LogFormat] = {}


def register_format(log_format: LogFormat) -> LogFormat:
    FORMATS[log_format.name] = log_format
    return log_format


def format_of_path(path: Path) -> LogFormat:
    """The format of the log at ``path``; a ``DataError`` naming what was looked for otherwise."""
    path = Path(path)
    for log_format in FORMATS.values():
        if log_format.recognises(path):
            return log_format
    if not path.exists():
        raise DataError("no such file or folder", path=str(path))
    if path.is_dir():
        looked_for = " nor ".join(f"{f.marker} ({f.title})" for f in FORMATS.values())
        raise DataError(f"not a driving log: the folder has neither {looked_for}", path=str(path))
    files = ", ".join(f.source_suffix for f in FORMATS.values() if f.reads_files)
    raise DataError(f"not a driving log: expected a folder or a {files} file", path=str(path))


def format_of_source(source: str) -> LogFormat | None:
    """The format of the file a row came from (``DrivingLog.source``), by its suffix; ``None`` when no format's
    (a log built in memory)."""
    for log_format in FORMATS.values():
        if log_format.is_source(source):
            return log_format
    return None


def is_log_file(name: str) -> bool:
    """Whether a file name belongs to a driving log of any format (its marker or a row source)."""
    return any(name == f.marker or f.is_source(name) for f in FORMATS.values())
