"""The log-format registry: one sniffer for every reader, and a new format is one ``LogFormat``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_tools import DataError, DrivingLog, read_log, write_frame
from data_tools.log_formats import FORMATS, LogFormat, format_of_path, format_of_source, is_log_file, register_format


def test_the_shipped_formats_are_sniffed_from_what_the_path_holds(udacity_log, tub, tmp_path):
    assert format_of_path(udacity_log(tmp_path / "u", n=3)).name == "udacity"
    assert format_of_path(udacity_log(tmp_path / "c", n=3) / "driving_log.csv").name == "udacity"
    assert format_of_path(tub(tmp_path / "t", records=3)).name == "tub"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"neither driving_log\.csv \(Udacity\) nor manifest\.json \(donkeycar tub\)"):
        format_of_path(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file"):
        format_of_path(tmp_path / "missing")
    assert format_of_source("x/catalog_3.catalog").car == "donkey"
    assert format_of_source("x/driving_log.csv").car == "udacity"
    assert format_of_source("in memory") is None
    assert is_log_file("manifest.json") and is_log_file("catalog_0.catalog") and not is_log_file("frame.jpg")


def test_a_registered_format_is_read_sniffed_and_named_everywhere(tmp_path):
    def read_rows_json(path, recording, on_error):
        rows = json.loads((path / "rows.json").read_text())
        source = str(path / "frames.rows")
        return DrivingLog.from_columns(center=[str(path / r["image"]) for r in rows],
                                       steering=[r["steering"] for r in rows], source=source,
                                       row=range(len(rows)), recording=recording)

    folder = tmp_path / "log"
    folder.mkdir()
    write_frame(folder / "a.png", np.zeros((8, 8, 3), np.uint8))
    (folder / "rows.json").write_text(json.dumps([{"image": "a.png", "steering": 0.25}] * 2))
    register_format(LogFormat("rows", "rows JSON", "rows.json", ".rows", "frame", "udacity", read_rows_json))
    try:
        driving_log = read_log(folder)
        np.testing.assert_allclose(driving_log.steering, [0.25, 0.25])
        assert driving_log.describe(1).endswith("frames.rows, frame 1")
        with pytest.raises(DataError, match=r"nor rows\.json \(rows JSON\)"):
            format_of_path(tmp_path)
    finally:
        FORMATS.pop("rows")
