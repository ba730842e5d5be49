"""Reader of donkeycar tub v2 folders: ``manifest.json``, ``catalog_N.catalog`` and ``images/``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from data_tools.errors import DataError
from data_tools.log import DrivingLog
from data_tools.udacity import as_paths, check_on_error

IMAGE_KEY = "cam/image_array"
ANGLE_KEY = "user/angle"
THROTTLE_KEY = "user/throttle"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text ({error.reason} at byte {error.start})", path=str(path)) from None


def _json_line(path: Path, lines: list[str], number: int):
    try:
        return json.loads(lines[number - 1])
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON ({error.msg})", path=str(path), row=f"line {number}") from None


def _read_manifest(tub: Path) -> tuple[list[str], set[int]]:
    """Catalog file names and deleted record indexes from the manifest's five JSON lines."""
    manifest = tub / "manifest.json"
    if not manifest.is_file():
        raise DataError("not a donkeycar tub: manifest.json is missing", path=str(tub))
    lines = _read_text(manifest).splitlines()
    if len(lines) < 5:
        raise DataError(f"expected 5 JSON lines (inputs, types, metadata, manifest, catalogs), found {len(lines)}",
                        path=str(manifest))
    inputs, catalogs = (_json_line(manifest, lines, number) for number in (1, 5))
    if not isinstance(inputs, list) or not isinstance(catalogs, dict):
        raise DataError("expected a list of inputs on line 1 and the catalog metadata object on line 5",
                        path=str(manifest))
    for key in (IMAGE_KEY, ANGLE_KEY):
        if key not in inputs:
            raise DataError(f"the tub has no {key!r} input (inputs: {inputs})", path=str(manifest), row="line 1")
    return list(catalogs.get("paths", [])), {int(i) for i in catalogs.get("deleted_indexes", [])}


def read_tub_folder(tub: Path, recording: int = 0, on_error: str = "raise") -> DrivingLog:
    """Read one tub; see ``read_tub``."""
    check_on_error(on_error)
    if not tub.is_dir():
        raise DataError("no such tub folder", path=str(tub))
    catalog_names, deleted = _read_manifest(tub)
    columns: dict[str, list] = {"center": [], "steering": [], "throttle": [], "timestamp": [], "row": [],
                                "source": []}
    skipped: list[str] = []
    deleted_seen = 0
    for name in catalog_names:
        catalog = tub / name
        if not catalog.is_file():
            problem = f"catalog {name} listed in manifest.json is missing"
            if on_error == "raise":
                raise DataError(problem, path=str(catalog))
            skipped.append(f"{catalog}: {problem}")
            continue
        for line_number, line in enumerate(_read_text(catalog).splitlines(), start=1):
            if not line.strip():
                continue
            where = f"line {line_number}"
            try:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"malformed JSON line ({error.msg})") from None
                if not isinstance(record, dict):
                    raise ValueError("record is not a JSON object")
                index = record.get("_index", line_number - 1)
                if isinstance(index, bool) or not isinstance(index, int):
                    raise ValueError(f"_index is not an integer: {index!r}")
                where = f"record {index} (line {line_number})"
                if index in deleted:
                    deleted_seen += 1
                    continue
                for key in (IMAGE_KEY, ANGLE_KEY):
                    if key not in record:
                        raise ValueError(f"missing key {key!r}")
                angle = record[ANGLE_KEY]
                if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not math.isfinite(angle):
                    raise ValueError(f"{ANGLE_KEY} is not a finite number: {angle!r}")
                if abs(angle) > 1.0:
                    raise ValueError(f"{ANGLE_KEY} {angle} is outside [-1, 1]")
                throttle = record.get(THROTTLE_KEY, 0.0)
                if not isinstance(throttle, (int, float)) or isinstance(throttle, bool):
                    raise ValueError(f"{THROTTLE_KEY} is not a number: {throttle!r}")
                image = tub / "images" / str(record[IMAGE_KEY])
                if not image.is_file():
                    raise ValueError(f"image {'is a directory' if image.is_dir() else 'not found'}: {image}")
            except ValueError as error:
                if on_error == "raise":
                    raise DataError(str(error), path=str(catalog), row=where) from None
                skipped.append(f"{catalog}, {where}: {error}")
                continue
            columns["center"].append(str(image.resolve()))
            columns["steering"].append(float(angle))
            columns["throttle"].append(float(throttle))
            stamp = record.get("_timestamp_ms")
            ok = isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and math.isfinite(stamp)
            columns["timestamp"].append(stamp / 1000.0 if ok else float("nan"))
            columns["row"].append(int(index))
            columns["source"].append(str(catalog))
    if not columns["row"]:
        detail = f" ({len(skipped)} bad records skipped; first: {skipped[0]})" if skipped else ""
        raise DataError(f"no usable records{detail}", path=str(tub))
    log = DrivingLog.from_columns(
        center=columns["center"], steering=columns["steering"], throttle=columns["throttle"],
        timestamp=columns["timestamp"], source=columns["source"], row=columns["row"], recording=recording, skipped=skipped, deleted=deleted_seen,
    )
    return log


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
