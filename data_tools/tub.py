"""Reader of donkeycar tub v2 folders: ``manifest.json``, ``catalog_N.catalog`` and ``images/``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from data_tools.errors import DataError
from data_tools.log import DrivingLog
from data_tools.log_formats import LogFormat, register_format
from data_tools.udacity import as_paths, check_on_error

IMAGE_KEY = "cam/image_array"
ANGLE_KEY = "user/angle"
THROTTLE_KEY = "user/throttle"
TIME_KEY = "_timestamp_ms"
SESSION_KEY = "_session_id"
MANIFEST = "manifest.json"
SESSION_GAP_S = 300  # a pause this long (or a clock going backwards) starts a new recording session

log = logging.getLogger(__name__)


def read_utf8(path: Path) -> str:
    """A tub file's text; a ``DataError`` naming it when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text ({error.reason} at byte {error.start})", path=str(path)) from None


def _json_line(path: Path, lines: list[str], number: int):
    try:
        return json.loads(lines[number - 1])
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON ({error.msg})", path=str(path), row=f"line {number}") from None


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_manifest(tub: Path) -> tuple[list[str], set[int]]:
    """Catalog file names and deleted record indexes from the manifest's five JSON lines, every type checked."""
    manifest = tub / MANIFEST
    if not manifest.is_file():
        raise DataError("not a donkeycar tub: manifest.json is missing", path=str(tub))
    lines = read_utf8(manifest).splitlines()
    if len(lines) < 5:
        raise DataError(f"expected 5 JSON lines (inputs, types, metadata, manifest, catalogs), found {len(lines)}",
                        path=str(manifest))
    inputs, catalogs = (_json_line(manifest, lines, number) for number in (1, 5))
    if not isinstance(inputs, list) or not all(isinstance(name, str) for name in inputs):
        raise DataError(f"line 1 must be the list of input names, found {inputs!r:.80}", path=str(manifest),
                        row="line 1")
    if not isinstance(catalogs, dict):
        raise DataError(f"line 5 must be the catalog metadata object, found {catalogs!r:.80}", path=str(manifest),
                        row="line 5")
    for key in (IMAGE_KEY, ANGLE_KEY):
        if key not in inputs:
            raise DataError(f"the tub has no {key!r} input (inputs: {inputs})", path=str(manifest), row="line 1")
    if "paths" not in catalogs:
        raise DataError("the catalog metadata has no 'paths' (the list of catalog files)", path=str(manifest),
                        row="line 5")
    paths = catalogs["paths"]
    if not isinstance(paths, list) or not all(isinstance(name, str) and name.strip() for name in paths):
        raise DataError(f"'paths' must be a list of catalog file names, found {type(paths).__name__} {paths!r:.80}",
                        path=str(manifest), row="line 5")
    deleted = catalogs.get("deleted_indexes", [])
    if not isinstance(deleted, list) or not all(is_integer(i) for i in deleted):
        raise DataError(f"'deleted_indexes' must be a list of integer record indexes, found "
                        f"{type(deleted).__name__} {deleted!r:.80}", path=str(manifest), row="line 5")
    return paths, set(deleted)


def records_of_line(line: str) -> list[Any]:
    """The JSON records of one catalog line: one, or several fused on one line by a writer that crashed
    before its newline; NUL bytes (a file extended but never written) are dropped. A ``ValueError`` when
    nothing is left or what is left is not JSON."""
    text = line.replace("\x00", "").strip()
    if not text:
        raise ValueError(f"a line of {line.count(chr(0))} NUL bytes (the writer crashed mid-write)")
    decoder, records, position = json.JSONDecoder(), [], 0
    while position < len(text):
        try:
            record, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise ValueError(f"malformed JSON line ({error.msg} at character {error.pos})") from None
        records.append(record)
        while position < len(text) and text[position] in " \t\r":
            position += 1
    return records


def record_values(record: Any, image_dir: Path, time_key: str) -> tuple[Path, float, float, float | None]:
    """(image, steering, throttle (NaN when not recorded), time stamp or None) of one donkeycar record; a
    ``ValueError`` saying what is wrong with it (a missing key, a value that is no finite number, a missing or
    empty image)."""
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    for key in (IMAGE_KEY, ANGLE_KEY):
        if key not in record:
            raise ValueError(f"missing key {key!r}")
    angle = record[ANGLE_KEY]
    if not is_finite_number(angle):
        raise ValueError(f"{ANGLE_KEY} is not a finite number: {angle!r:.80}")
    if abs(angle) > 1.0:
        raise ValueError(f"{ANGLE_KEY} {angle} is outside [-1, 1]")
    throttle = record.get(THROTTLE_KEY, float("nan"))  # not recorded: NaN, never a made-up 0
    if THROTTLE_KEY in record and not is_finite_number(throttle):
        raise ValueError(f"{THROTTLE_KEY} is not a finite number: {throttle!r:.80}")
    stamp = record.get(time_key)
    if stamp is not None and not is_finite_number(stamp):
        raise ValueError(f"{time_key} is not a finite number: {stamp!r:.80}")
    name = record[IMAGE_KEY]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{IMAGE_KEY} is not an image file name: {name!r:.80}")
    image = image_dir / name
    if not image.is_file():
        raise ValueError(f"image {'is a directory' if image.is_dir() else 'not found'}: {image}")
    if image.stat().st_size == 0:
        raise ValueError(f"image is empty (0 bytes; the writer crashed mid-write): {image}")
    return image, float(angle), float(throttle), stamp


def sessions(stamps: Sequence[float], session_ids: Sequence[Any] | None = None) -> np.ndarray:
    """A session number per record: a new session where ``_session_id`` changes, or (without ids) where the
    clock goes backwards or pauses longer than ``SESSION_GAP_S`` (a tub recorded on several days)."""
    stamps = np.asarray(stamps, np.float64)
    starts = np.zeros(len(stamps), bool)
    if session_ids is not None and any(i is not None for i in session_ids):
        starts[1:] = [a != b for a, b in zip(session_ids[1:], session_ids[:-1])]
    else:
        steps = np.diff(stamps)
        starts[1:] = np.isfinite(steps) & ((steps < 0) | (steps > SESSION_GAP_S))
    return np.cumsum(starts).astype(np.int32)


class TubRecords:
    """Columns of the records read so far, and what was left out."""

    def __init__(self, on_error: str):
        self.on_error = on_error
        self.columns: dict[str, list] = {"center": [], "steering": [], "throttle": [], "timestamp": [], "row": [],
                                         "source": [], "session": []}
        self.skipped: list[str] = []
        self.deleted = 0

    def problem(self, message: str, path: Path, where: str | None = None) -> None:
        if self.on_error == "raise":
            raise DataError(message, path=str(path), row=where)
        self.skipped.append(f"{path}, {where}: {message}" if where else f"{path}: {message}")

    def add(self, image: Path, angle: float, throttle: float, stamp: float | None, index: int, source: Path,
            session: Any) -> None:
        for name, value in (("center", str(image.resolve())), ("steering", angle), ("throttle", throttle),
                            ("timestamp", float("nan") if stamp is None else stamp), ("row", int(index)),
                            ("source", str(source)), ("session", session)):
            self.columns[name].append(value)

    def log(self, tub: Path, recording: int) -> DrivingLog:
        columns = self.columns
        if not columns["row"]:
            detail = f" ({len(self.skipped)} bad records skipped; first: {self.skipped[0]})" if self.skipped else ""
            raise DataError(f"no usable records{detail}", path=str(tub))
        session = sessions(columns["timestamp"], columns["session"])
        if session[-1]:
            log.info("%s: %d recording sessions (time stamps go backwards or pause over %d s)", tub,
                     session[-1] + 1, SESSION_GAP_S)
        return DrivingLog.from_columns(
            center=columns["center"], steering=columns["steering"], throttle=columns["throttle"],
            timestamp=columns["timestamp"], source=columns["source"], row=columns["row"],
            # Sessions count on from ``recording``; DrivingLog.concat renumbers every log's recordings anyway.
            recording=recording + session, skipped=self.skipped, deleted=self.deleted,
        )


def read_tub_folder(tub: Path, recording: int = 0, on_error: str = "raise") -> DrivingLog:
    """Read one tub; see ``read_tub``."""
    check_on_error(on_error)
    if not tub.is_dir():
        raise DataError("no such tub folder", path=str(tub))
    catalog_names, deleted = _read_manifest(tub)
    records = TubRecords(on_error)
    first_seen: dict[int, str] = {}  # _index -> where it was first read
    for name in catalog_names:
        catalog = tub / name
        if not catalog.is_file():
            records.problem(f"catalog {name} listed in manifest.json is missing", catalog)
            continue
        # Lines end at "\n" only: str.splitlines would also break inside a JSON string holding U+2028.
        for line_number, line in enumerate(read_utf8(catalog).split("\n"), start=1):
            if not line.strip():
                continue
            try:
                line_records = records_of_line(line)
            except ValueError as error:
                records.problem(str(error), catalog, f"line {line_number}")
                continue
            if len(line_records) > 1:
                log.info("%s, line %d: %d records fused on one line (a crash while writing), read apart", catalog,
                         line_number, len(line_records))
            for record in line_records:
                where = f"line {line_number}"
                try:
                    if not isinstance(record, dict):
                        raise ValueError("record is not a JSON object")
                    index = record.get("_index", line_number - 1)
                    if not is_integer(index):
                        raise ValueError(f"_index is not an integer: {index!r}")
                    where = f"record {index} (line {line_number})"
                    if index in deleted:
                        records.deleted += 1
                        continue
                    if index in first_seen:
                        raise ValueError(f"_index {index} repeats {first_seen[index]}")
                    first_seen[index] = f"{catalog.name}, line {line_number}"
                    image, angle, throttle, stamp = record_values(record, tub / "images", TIME_KEY)
                except ValueError as error:
                    records.problem(str(error), catalog, where)
                    continue
                records.add(image, angle, throttle, None if stamp is None else stamp / 1000.0, index, catalog,
                            record.get(SESSION_KEY))
    return records.log(tub, recording)


def read_tub(path_or_paths, on_error: str = "raise") -> DrivingLog:
    """Read donkeycar tub v2 folders into one ``DrivingLog`` (the ``center`` camera).

    The manifest's catalog metadata lists the ``catalog_N.catalog`` JSON-lines
    files and the ``deleted_indexes``; deleted records are left out. Keys used:
    ``cam/image_array`` (file under ``images/``), ``user/angle``, ``user/throttle``.
    ``row`` holds the record's ``_index``.

    Args:
        path_or_paths: one tub folder or several (one recording each).
        on_error: ``"raise"`` (a ``DataError`` naming catalog and record) or ``"skip"``
            (bad records counted in ``log.skipped``). Defaults to `"raise"`.
    """
    return DrivingLog.concat([read_tub_folder(p, i, on_error) for i, p in enumerate(as_paths(path_or_paths))])


register_format(LogFormat("tub", "donkeycar tub", MANIFEST, ".catalog", "record", "donkey", read_tub_folder))
