"""Reader of Udacity-simulator driving logs: ``driving_log.csv`` + ``IMG/``."""

from __future__ import annotations

import csv
import datetime
import logging
import math
import os
import re
from pathlib import Path, PureWindowsPath
from typing import Iterable, Sequence

from data_tools.errors import DataError
from data_tools.log import DrivingLog
from data_tools.log_formats import LogFormat, register_format

log = logging.getLogger(__name__)

COLUMNS = ("center", "left", "right", "steering", "throttle", "brake", "speed")  # headerless files, by position
REQUIRED = ("center", "steering", "throttle", "speed")  # what a header must name; left, right, brake are optional
LOG_NAME = "driving_log.csv"
ON_ERROR = ("raise", "skip")


def _spellings() -> dict[str, str]:
    """Normalised header spelling -> column (``"Center Camera"``, ``"centre_image"``, ``"steering_angle"``...)."""
    names: dict[str, str] = {}
    for column, words in (("center", ("center", "centre")), ("left", ("left",)), ("right", ("right",))):
        for word in words:
            names[word] = column
            for part in ("image", "img", "camera", "cam", "path", "image_path", "frame"):
                names[f"{word}_{part}"] = names[f"{part}_{word}"] = column
    names.update(dict.fromkeys(("steering", "steering_angle", "steer", "steer_angle", "angle"), "steering"))
    names.update(dict.fromkeys(("throttle", "gas"), "throttle"))
    names.update(dict.fromkeys(("brake", "braking", "break"), "brake"))
    names.update(dict.fromkeys(("speed", "velocity"), "speed"))
    return names


HEADER_NAMES = _spellings()


def _normalise(cell: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", cell.strip().strip("\"'").lower()).strip("_")


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


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _is_header(cells: Sequence[str]) -> bool:
    """A first line naming a known column, or holding no number at all (data rows always hold four)."""
    return any(_normalise(c) in HEADER_NAMES for c in cells) or not any(_is_number(c) for c in cells)


def _header_columns(cells: Sequence[str], csv_path: Path, line: int) -> dict[str, int]:
    """Column -> position from a header; a ``DataError`` naming what is missing or named twice."""
    positions: dict[str, int] = {}
    unknown = []
    for position, cell in enumerate(cells):
        column = HEADER_NAMES.get(_normalise(cell))
        if column is None:
            unknown.append(cell.strip())
        elif column in positions:
            raise DataError(f"the header names the {column} column twice ({cells[positions[column]].strip()!r} "
                            f"and {cell.strip()!r})", path=str(csv_path), line=line)
        else:
            positions[column] = position
    missing = [c for c in REQUIRED if c not in positions]
    if missing:
        header = ", ".join(c.strip() for c in cells)
        raise DataError(f"the header lacks the column(s) {', '.join(missing)} (header: {header}; "
                        f"expected names like {', '.join(COLUMNS)})", path=str(csv_path), line=line)
    if unknown:
        log.warning("%s, line %d: header columns ignored (not known): %s", csv_path, line, ", ".join(unknown))
    return positions


def _number(cell: str, name: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{name} is not a number: {cell.strip()!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite: {cell.strip()!r}")
    return value


def _parse_line(text: str) -> list[str]:
    """The cells of one physical line; a ``ValueError`` saying what is wrong with its quoting or size."""
    try:
        return next(csv.reader([text], skipinitialspace=True, strict=True), [])
    except csv.Error as error:
        message = str(error)
        if "unexpected end of data" in message:
            raise ValueError("unclosed quote: a field opens with \" and the line ends before it closes") from None
        if "field limit" in message:
            longest = max(len(cell) for cell in text.split(","))
            raise ValueError(f"a field of {longest} characters is longer than the CSV field limit "
                             f"({csv.field_size_limit()}): not a driving log line") from None
        raise ValueError(f"malformed CSV line ({message})") from None


def _physical_lines(text: str) -> list[str]:
    """The file's lines as an editor numbers them (``\n``, ``\r\n`` or ``\r`` ends a line)."""
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new one
    return lines


def _read_text(csv_path: Path) -> str:
    data = csv_path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"not a UTF-8 text CSV ({error.reason} at line {line}, byte {error.start}; "
                        "save it as UTF-8)", path=str(csv_path)) from None


def read_udacity_csv(path: Path, recording: int = 0, on_error: str = "raise") -> DrivingLog:
    """Read one ``driving_log.csv``; see ``read_udacity``."""
    check_on_error(on_error)
    csv_path = find_csv(path)
    csv_dir = csv_path.parent
    text = _read_text(csv_path)
    lines = _physical_lines(text)
    truncated_last = bool(text) and not text.endswith(("\n", "\r"))
    columns: dict[str, list] = {name: [] for name in ("center", "left", "right", "steering", "throttle", "speed",
                                                      "timestamp", "row")}
    skipped: list[str] = []
    positions = {name: i for i, name in enumerate(COLUMNS)}
    width = len(COLUMNS)
    header_line = 0  # rows are counted from the line after the header
    for line, line_text in enumerate(lines, start=1):
        if not line_text.strip():
            continue
        row = line - header_line
        try:
            cells = _parse_line(line_text)
            if not header_line and not columns["row"] and not skipped and _is_header(cells):
                positions, width, header_line = _header_columns(cells, csv_path, line), len(cells), line
                continue
            if len(cells) != width:
                hint = " (truncated last row?)" if truncated_last and line == len(lines) else ""
                raise ValueError(f"expected {width} columns, found {len(cells)}{hint}")
            steering = _number(cells[positions["steering"]], "steering")
            if abs(steering) > 1.0:
                raise ValueError(f"steering {steering} is outside [-1, 1]")
            throttle = _number(cells[positions["throttle"]], "throttle")
            speed = _number(cells[positions["speed"]], "speed")
            images = {}
            for camera in ("center", "left", "right"):
                cell = cells[positions[camera]] if camera in positions else ""
                if not cell.strip():
                    if camera == "center":
                        raise ValueError("center image path is empty")
                    images[camera] = ""
                    continue
                found = resolve_image(cell, csv_dir)
                if found is None:
                    raise ValueError(f"{camera} image not found: {cell.strip()} (also looked in {csv_dir / 'IMG'})")
                if found.is_dir():
                    raise ValueError(f"{camera} image path is a directory: {found}")
                images[camera] = str(found)
        except ValueError as error:
            if isinstance(error, DataError):
                raise  # a problem of the whole file (its header), not of one row
            problem = DataError(str(error), path=str(csv_path), row=row, line=line)
            if on_error == "raise":
                raise problem from None
            skipped.append(str(problem))
            continue
        for camera, image in images.items():
            columns[camera].append(image)
        columns["steering"].append(steering)
        columns["throttle"].append(throttle)
        columns["speed"].append(speed)
        # The name the CSV wrote carries the time: a symlinked image resolves to a name of its own (a content
        # store's hash, a renamed copy); the resolved name is the fallback for a CSV of renamed cells.
        written_time = timestamp_from_name(cells[positions["center"]])
        if not math.isfinite(written_time):
            written_time = timestamp_from_name(images["center"])
        columns["timestamp"].append(written_time)
        columns["row"].append(row)
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


register_format(LogFormat("udacity", "Udacity", LOG_NAME, ".csv", "row", "udacity", read_udacity_csv,
                          reads_files=True))
