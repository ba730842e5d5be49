"""Reader of donkeycar tub v1 folders (donkeycar before 4.0): ``meta.json``, ``record_N.json`` and the images
beside them (``N_cam-image_array_.jpg``), with the excluded records in ``exclude.json``.

Many users still hold tubs of this format; they are read like v2 tubs (``data_tools.tub``), with the same record
checks, so that converting them first (donkeycar's ``donkey tubclean`` / ``convert_to_tub_v2``) is optional.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from data_tools.errors import DataError
from data_tools.log import DrivingLog
from data_tools.log_formats import LogFormat, register_format
from data_tools.tub import (ANGLE_KEY, IMAGE_KEY, TubRecords, is_finite_number, is_integer, read_utf8,
                            record_values, records_of_line)
from data_tools.udacity import check_on_error

META = "meta.json"
EXCLUDE = "exclude.json"
RECORD_NAME = r"record_(\d+)\.json"
TIME_KEY = "milliseconds"  # since the tub's "start" (meta.json), in the v1 writer


def _read_json(path: Path):
    text = read_utf8(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON ({error.msg})", path=str(path)) from None


def _read_meta(tub: Path) -> tuple[float, set[int]]:
    """The tub's start time (seconds; 0 when not recorded) and its excluded record indexes."""
    meta = _read_json(tub / META)
    if not isinstance(meta, dict):
        raise DataError(f"expected a JSON object with 'inputs' and 'types', found {meta!r:.80}", path=str(tub / META))
    inputs = meta.get("inputs", [])
    if not isinstance(inputs, list) or (inputs and not all(k in inputs for k in (IMAGE_KEY, ANGLE_KEY))):
        raise DataError(f"the tub has no {IMAGE_KEY!r} and {ANGLE_KEY!r} inputs (inputs: {inputs!r:.120})",
                        path=str(tub / META))
    start = meta.get("start", 0.0)
    excluded: set[int] = set()
    if (tub / EXCLUDE).is_file():
        listed = _read_json(tub / EXCLUDE)
        if not isinstance(listed, list) or not all(is_integer(i) for i in listed):
            raise DataError(f"expected a list of record indexes, found {listed!r:.80}", path=str(tub / EXCLUDE))
        excluded = set(listed)
    return (float(start) if is_finite_number(start) else 0.0), excluded


def read_tub_v1_folder(tub: Path, recording: int = 0, on_error: str = "raise") -> DrivingLog:
    """Read one tub v1 folder into a ``DrivingLog`` (the ``center`` camera), records in index order.

    ``row`` holds the record's index (``record_N.json``); the time stamp is the tub's start plus the record's
    ``milliseconds``; records listed in ``exclude.json`` are left out like a v2 tub's deleted ones.
    """
    check_on_error(on_error)
    if not tub.is_dir():
        raise DataError("no such tub folder", path=str(tub))
    start, excluded = _read_meta(tub)
    numbered = sorted((int(match.group(1)), path) for path in tub.iterdir()
                      if (match := re.fullmatch(RECORD_NAME, path.name)) and path.is_file())
    records = TubRecords(on_error)
    for index, path in numbered:
        if index in excluded:
            records.deleted += 1
            continue
        try:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
            found = records_of_line(text)
            if len(found) != 1:
                raise ValueError(f"expected one JSON record, found {len(found)}")
            image, angle, throttle, stamp = record_values(found[0], tub, TIME_KEY)
        except ValueError as error:
            records.problem(str(error), path, f"record {index}")
            continue
        records.add(image, angle, throttle, None if stamp is None else start + stamp / 1000.0, index, path, None)
    return records.log(tub, recording)


register_format(LogFormat("tub_v1", "donkeycar tub v1", META, ".json", "record", "donkey", read_tub_v1_folder,
                          source_pattern=RECORD_NAME))
