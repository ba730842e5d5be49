"""Reader of donkeycar tub v2 folders: ``manifest.json``, ``catalog_N.catalog`` and ``images/``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from data_tools.errors import DataError
from data_tools.log import DrivingLog
from data_tools.log_formats import LogFormat, register_format
from data_tools.udacity import as_paths, check_on_error

IMAGE_KEY = "cam/image_array"
ANGLE_KEY = "user/angle"
THROTTLE_KEY = "user/throttle"
TIME_KEY = "_timestamp_ms"
MANIFEST = "manifest.json"


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


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_manifest(tub: Path) -> tuple[list[str], set[int]]:
    """Catalog file names and deleted record indexes from the manifest's five JSON lines, every type checked."""
    manifest = tub / MANIFEST
    if not manifest.is_file():
        raise DataError("not a donkeycar tub: manifest.json is missing", path=str(tub))
    lines = _read_text(manifest).splitlines()
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
    if not isinstance(deleted, list) or not all(_is_int(i) for i in deleted):
        raise DataError(f"'deleted_indexes' must be a list of integer record indexes, found "
                        f"{type(deleted).__name__} {deleted!r:.80}", path=str(manifest), row="line 5")
    return paths, set(deleted)


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
    first_seen: dict[int, str] = {}  # _index -> where it was first read
    for name in catalog_names:
        catalog = tub / name
        if not catalog.is_file():
            problem = f"catalog {name} listed in manifest.json is missing"
            if on_error == "raise":
                raise DataError(problem, path=str(catalog))
            skipped.append(f"{catalog}: {problem}")
            continue
        # Lines end at "\n" only: str.splitlines would also break inside a JSON string holding U+2028.
        for line_number, line in enumerate(_read_text(catalog).split("\n"), start=1):
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
                if not _is_int(index):
                    raise ValueError(f"_index is not an integer: {index!r}")
                where = f"record {index} (line {line_number})"
                if index in deleted:
                    deleted_seen += 1
                    continue
                if index in first_seen:
                    raise ValueError(f"_index {index} repeats {first_seen[index]}")
                first_seen[index] = f"{catalog.name}, line {line_number}"
                for key in (IMAGE_KEY, ANGLE_KEY):
                    if key not in record:
                        raise ValueError(f"missing key {key!r}")
                angle = record[ANGLE_KEY]
                if not _is_number(angle):
                    raise ValueError(f"{ANGLE_KEY} is not a finite number: {angle!r:.80}")
                if abs(angle) > 1.0:
                    raise ValueError(f"{ANGLE_KEY} {angle} is outside [-1, 1]")
                throttle = record.get(THROTTLE_KEY, 0.0)
                if not _is_number(throttle):
                    raise ValueError(f"{THROTTLE_KEY} is not a finite number: {throttle!r:.80}")
                stamp = record.get(TIME_KEY)
                if stamp is not None and not _is_number(stamp):
                    raise ValueError(f"{TIME_KEY} is not a finite number: {stamp!r:.80}")
                name = record[IMAGE_KEY]
                if not isinstance(name, str) or not name.strip():
                    raise ValueError(f"{IMAGE_KEY} is not an image file name: {name!r:.80}")
                image = tub / "images" / name
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
            columns["timestamp"].append(float("nan") if stamp is None else stamp / 1000.0)
            columns["row"].append(int(index))
            columns["source"].append(str(catalog))
    if not columns["row"]:
        detail = f" ({len(skipped)} bad records skipped; first: {skipped[0]})" if skipped else ""
        raise DataError(f"no usable records{detail}", path=str(tub))
    log = DrivingLog.from_columns(
        center=columns["center"], steering=columns["steering"], throttle=columns["throttle"],
        timestamp=columns["timestamp"], source=columns["source"], row=columns["row"], recording=recording,
        skipped=skipped, deleted=deleted_seen,
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


register_format(LogFormat("tub", "donkeycar tub", MANIFEST, ".catalog", "record", "donkey", read_tub_folder))
