"""Reader of Udacity-simulator driving logs: ``driving_log.csv`` + ``IMG/``."""

from __future__ import annotations

import csv
import datetime
import math
import re
import os
from pathlib import Path, PureWindowsPath
from typing import Iterable, Sequence

from data_tools.errors import DataError
from data_tools.log import DrivingLog

COLUMNS = ("center", "left", "right", "steering", "throttle", "brake", "speed")
LOG_NAME = "driving_log.csv"
ON_ERROR = ("raise", "skip")


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"Expected on_error in {ON_ERROR}. Received: on_error={on_error!r}")


def as_paths(path_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        return [Path(path_or_paths)]
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise DataError("no log paths given")
    return paths


def find_csv(path: Path) -> Path:
    """The CSV of a Udacity log given its folder or the CSV itself."""
    if path.is_dir():
        csv_path = path / LOG_NAME
        if not csv_path.is_file():
            raise DataError(f"no {LOG_NAME} in this folder", path=str(path))
        return csv_path
    if not path.exists():
        raise DataError("no such file or folder", path=str(path))
    return path


def resolve_image(written: str, csv_dir: Path) -> Path | None:
    """Find the image a CSV cell names, as written or by file name under ``IMG/`` next to the CSV.

    Logs recorded on another machine hold absolute paths of that machine
    (``C:\\Users\\...\\IMG\\center_x.jpg``); only the file name still means something.
    """
    written = written.strip()
    if not written:
        return None
    candidate = Path(written)
    if not candidate.is_absolute():
        candidate = csv_dir / candidate
    if candidate.is_file():
        return candidate.resolve()
    name = PureWindowsPath(written).name if "\\" in written else Path(written).name
    by_name = csv_dir / "IMG" / name
    if by_name.is_file():
        return by_name.resolve()
    return candidate if candidate.exists() else None


def _is_header(row: Sequence[str]) -> bool:
    if len(row) < 4:
        return False
    try:
        float(row[3])
        return False
    except ValueError:
        return any(cell.strip().lower() in COLUMNS for cell in row)


def _number(cell: str, name: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise ValueError(f"{name} is not a number: {cell.strip()!r}") from None


def read_udacity_csv(path: Path, recording: int = 0, on_error: str = "raise") -> DrivingLog:
    """Read one ``driving_log.csv``; see ``read_udacity``."""
    check_on_error(on_error)
    csv_path = find_csv(path)
    csv_dir = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise DataError(f"not a UTF-8 text CSV ({error.reason})", path=str(csv_path)) from None
    lines = text.splitlines()
    truncated_last = bool(text) and not text.endswith(("\n", "\r"))
    columns: dict[str, list] = {name: [] for name in ("center", "left", "right", "steering", "throttle", "speed",
                                                      "timestamp", "row")}
    skipped: list[str] = []
    rows = list(csv.reader(lines, skipinitialspace=True))
    for number, row in enumerate(rows, start=1):
        if number == 1 and _is_header(row):
            continue
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            if len(row) != len(COLUMNS):
                hint = " (truncated last row?)" if truncated_last and number == len(rows) else ""
                raise ValueError(f"expected {len(COLUMNS)} columns, found {len(row)}{hint}")
            steering = _number(row[3], "steering")
            if not math.isfinite(steering):
                raise ValueError(f"steering is not finite: {row[3].strip()!r}")
            if abs(steering) > 1.0:
                raise ValueError(f"steering {steering} is outside [-1, 1]")
            throttle = _number(row[4], "throttle")
            speed = _number(row[6], "speed")
            images = []
            for camera, cell in zip(("center", "left", "right"), row[:3]):
                if not cell.strip():
                    if camera == "center":
                        raise ValueError("center image path is empty")
                    images.append("")
                    continue
                found = resolve_image(cell, csv_dir)
                if found is None:
                    raise ValueError(f"{camera} image not found: {cell.strip()} (also looked in {csv_dir / 'IMG'})")
                if found.is_dir():
                    raise ValueError(f"{camera} image path is a directory: {found}")
                images.append(str(found))
        except ValueError as error:
            if on_error == "raise":
                raise DataError(str(error), path=str(csv_path), row=number) from None
            skipped.append(f"{csv_path}, row {number}: {error}")
            continue
        for camera, image in zip(("center", "left", "right"), images):
            columns[camera].append(image)
        columns["steering"].append(steering)
        columns["throttle"].append(throttle)
        columns["speed"].append(speed)
        columns["timestamp"].append(timestamp_from_name(row[0]))
        columns["row"].append(number)
    if not columns["row"]:
        detail = f" ({len(skipped)} bad rows skipped; first: {skipped[0]})" if skipped else ""
        raise DataError(f"no usable rows{detail}", path=str(csv_path))
    return DrivingLog.from_columns(
        center=columns["center"],
        left=columns["left"] if any(columns["left"]) else None,
        right=columns["right"] if any(columns["right"]) else None,
        steering=columns["steering"],
        throttle=columns["throttle"],
        speed=columns["speed"],
        timestamp=columns["timestamp"],
        source=str(csv_path),
        row=columns["row"],
        recording=recording,
        skipped=skipped,
    )


_TIME_IN_NAME = re.compile(r"(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{1,3})\.\w+$")


def timestamp_from_name(path: str) -> float:
    """Seconds since the epoch (UTC) from a Udacity image name like ``center_2016_12_01_13_30_48_287.jpg``.

    NaN when the name carries no time stamp (recordings renamed by other tools).
    """
    match = _TIME_IN_NAME.search(path.strip().replace("\\", "/"))
    if not match:
        return float("nan")
    year, month, day, hour, minute, second, millis = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                                   tzinfo=datetime.timezone.utc)
    except ValueError:
        return float("nan")
    return moment.timestamp() + int(millis.ljust(3, "0")) / 1000.0


def read_udacity(path_or_paths, on_error: str = "raise") -> DrivingLog:
    """Read Udacity-simulator logs into one ``DrivingLog``.

    Each path is a log folder (holding ``driving_log.csv`` and ``IMG/``) or the
    CSV itself. The CSV may have a header row or not, spaces after commas, and
    image paths that are relative, absolute, or absolute Windows paths from the
    recording machine (resolved by file name against ``IMG/`` next to the CSV).
    Several logs are merged, one recording each.

    Args:
        path_or_paths: one path or several.
        on_error: ``"raise"`` a ``DataError`` naming the file, row and problem at
            the first bad row, or ``"skip"`` bad rows (counted in ``log.skipped``).
            Defaults to `"raise"`.
    """
    logs = [read_udacity_csv(path, recording=i, on_error=on_error) for i, path in enumerate(as_paths(path_or_paths))]
    return DrivingLog.concat(logs)
