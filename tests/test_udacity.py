"""Udacity log reading: real sample, path forms, headers, merging and every kind of bad row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_tools import DataError, read_log, read_udacity
from tests.builders import BAD_ROWS, make_udacity_log as make_log


def test_real_sample_with_windows_paths(udacity_sim_a):
    log = read_udacity(udacity_sim_a)
    assert len(log) == 613
    assert log.cameras == ("center", "left", "right")
    assert all(Path(p).is_file() and Path(p).parent.name == "IMG" for p in log.images["left"])
    assert log.steering.mean() == pytest.approx(0.008, abs=0.001)  # PROVENANCE.md
    assert np.mean(log.steering == 0) == pytest.approx(0.706, abs=0.001)
    assert log.row[0] == 1 and log.row[-1] == 613


@pytest.mark.parametrize("style", ["relative", "absolute", "windows", "posix_elsewhere"])
@pytest.mark.parametrize("header", [False, True])
def test_path_styles_and_header(tmp_path, style, header):
    make_log(tmp_path, path_style=style, header=header)
    log = read_udacity(tmp_path / "driving_log.csv")
    assert len(log) == 4
    np.testing.assert_allclose(log.steering, [-0.5, -0.25, 0.0, 0.25])
    np.testing.assert_allclose(log.speed, [20, 21, 22, 23])
    assert Path(log.images["right"][2]).name == "right_002.jpg"
    assert log.row.tolist() == [1, 2, 3, 4]  # data rows: a header is not a row


def test_several_logs_merge_into_separate_recordings(tmp_path):
    a, b = make_log(tmp_path / "a", n=3), make_log(tmp_path / "b", n=5)
    log = read_log([a, b])
    assert len(log) == 8
    assert log.recording.tolist() == [0] * 3 + [1] * 5
    assert set(log.source) == {str(a / "driving_log.csv"), str(b / "driving_log.csv")}


def test_non_ascii_folder(tmp_path):
    folder = make_log(tmp_path / "données" / "ログ", n=2)
    log = read_log(folder)
    assert len(log) == 2 and "ログ" in log.images["center"][0]




@pytest.mark.parametrize("row,message", BAD_ROWS)
def test_bad_row_raises_naming_file_and_row(tmp_path, row, message):
    make_log(tmp_path, rows=[row], n=3)
    with pytest.raises(DataError, match=message) as info:
        read_udacity(tmp_path)
    assert f"{tmp_path / 'driving_log.csv'}, row 4: " in str(info.value)


@pytest.mark.parametrize("row,message", BAD_ROWS)
def test_bad_row_skipped_and_counted_on_request(tmp_path, row, message):
    make_log(tmp_path, rows=[row], n=3)
    log = read_udacity(tmp_path, on_error="skip")
    assert len(log) == 3
    assert len(log.skipped) == 1 and "row 4" in log.skipped[0]


def test_truncated_last_row(tmp_path):
    make_log(tmp_path, n=3)
    csv = tmp_path / "driving_log.csv"
    csv.write_text(csv.read_text() + "IMG/center_000.jpg, IMG/left_0", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 4: expected 7 columns, found 2 \(truncated last row\?\)"):
        read_udacity(tmp_path)


def test_empty_csv_and_missing_log(tmp_path):
    (tmp_path / "driving_log.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="driving_log.csv: no usable rows"):
        read_udacity(tmp_path)
    with pytest.raises(DataError, match="no driving_log.csv in this folder"):
        read_udacity(tmp_path / "IMG" if (tmp_path / "IMG").mkdir() is None else tmp_path)
    with pytest.raises(DataError, match="neither driving_log.csv"):
        read_log(tmp_path / "IMG")


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    make_log(tmp_path, n=0, rows=[BAD_ROWS[0][0], BAD_ROWS[3][0]])
    with pytest.raises(DataError, match=r"no usable rows \(2 bad rows skipped"):
        read_udacity(tmp_path, on_error="skip")


def test_non_utf8_csv_is_a_clear_error(tmp_path):
    (tmp_path / "driving_log.csv").write_bytes(b"IMG/c\xe9.jpg, IMG/l.jpg, IMG/r.jpg, 0, 0, 0, 1\n")
    with pytest.raises(DataError, match=r"driving_log.csv: not a UTF-8 text CSV"):
        read_udacity(tmp_path)


def test_time_stamps_come_from_the_names_the_csv_wrote_even_for_symlinked_images(tmp_path):
    """Logs assembled from a content store (git-annex, DVC, a deduplicating copy) hold symlinks whose targets
    are hashes: the time is in the name the CSV wrote, not in the resolved file's."""
    import datetime

    store, log_dir = tmp_path / "store", tmp_path / "log"
    store.mkdir()
    (log_dir / "IMG").mkdir(parents=True)
    start = datetime.datetime(2016, 12, 1, 13, 30, 48, 287000, tzinfo=datetime.timezone.utc)
    moments = [start + datetime.timedelta(milliseconds=100 * i + 7 * (i % 2)) for i in range(4)]
    lines = []
    for i, moment in enumerate(moments):
        cells = []
        for camera in ("center", "left", "right"):
            target = store / f"SHA256E-s1234--{i}{camera}abcdef.jpg"
            from data_tools import write_frame
            write_frame(target, np.full((16, 32, 3), 10 * i, np.uint8))
            name = f"{camera}_{moment:%Y_%m_%d_%H_%M_%S}_{moment.microsecond // 1000:03d}.jpg"
            (log_dir / "IMG" / name).symlink_to(target)
            cells.append(f"/home/someone/data/IMG/{name}")  # written on another machine: found by name
        lines.append(", ".join(cells + ["0.1", "0.5", "0", "20"]))
    (log_dir / "driving_log.csv").write_text("\n".join(lines) + "\n")
    log = read_udacity(log_dir)
    assert log.timestamp == pytest.approx([m.timestamp() for m in moments], abs=1e-6)
    assert all(Path(p).parent == store for p in log.images["center"])  # the frames are the store's files
