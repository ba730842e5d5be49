"""Tubs and logs as they are found in the wild, each fault built from the shared real recordings: what is read,
what is left out and how it is named, by ``read_log``, ``data check`` and ``train --skip-bad``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_tools import DataError, check, read_log
from data_tools.frames import read_frame, write_frame

RECORDS = 40


def small_tub(source: Path, folder: Path, records: int = RECORDS) -> Path:
    """The first ``records`` records of a real tub v2, in one catalog, images copied."""
    (folder / "images").mkdir(parents=True)
    lines = (source / "catalog_0.catalog").read_text().splitlines()[:records]
    for line in lines:
        name = json.loads(line)["cam/image_array"]
        shutil.copy(source / "images" / name, folder / "images" / name)
    (folder / "catalog_0.catalog").write_text("\n".join(lines) + "\n")
    manifest = (source / "manifest.json").read_text().splitlines()
    catalogs = json.loads(manifest[4])
    catalogs.update(paths=["catalog_0.catalog"], current_index=records, deleted_indexes=[])
    (folder / "manifest.json").write_text("\n".join([*manifest[:4], json.dumps(catalogs)]) + "\n")
    return folder


def catalog_lines(tub: Path) -> list[str]:
    return (tub / "catalog_0.catalog").read_text().split("\n")


def write_catalog(tub: Path, lines: list[str]) -> None:
    (tub / "catalog_0.catalog").write_text("\n".join(lines))


@pytest.fixture
def tub(donkey_tub_real, tmp_path) -> Path:
    return small_tub(donkey_tub_real, tmp_path / "tub")


def test_a_line_of_nul_bytes_is_left_out_and_named(tub):
    original = read_log(tub)
    lines = catalog_lines(tub)
    lines[4] = "\x00" * len(lines[4])  # a crash after the file grew, before the bytes were written
    write_catalog(tub, lines)
    with pytest.raises(DataError, match=r"catalog_0.catalog, line 5: a line of \d+ NUL bytes \(the writer crashed"):
        read_log(tub)
    kept = read_log(tub, on_error="skip")
    assert len(kept) == RECORDS - 1 and list(kept.row) == [r for r in original.row if r != 4]
    assert check([tub]).damaged_lines == 1


def test_two_records_fused_on_one_line_are_both_read(tub):
    original = read_log(tub)
    lines = catalog_lines(tub)
    lines[7:9] = [lines[7] + lines[8]]  # the newline of record 7 never reached the disk
    write_catalog(tub, lines)
    fused = read_log(tub)
    assert list(fused.row) == list(original.row)
    np.testing.assert_array_equal(fused.steering, original.steering)
    np.testing.assert_array_equal(fused.timestamp, original.timestamp)


def test_empty_and_missing_images_are_left_out_by_kind_and_a_corrupt_folder_is_ignored(tub):
    names = [json.loads(line)["cam/image_array"] for line in catalog_lines(tub) if line]
    (tub / "images" / names[10]).write_bytes(b"")
    (tub / "images" / names[12]).unlink()
    (tub / "img_corrupt").mkdir()  # where some tools move frames they could not decode
    shutil.copy(tub / "images" / names[0], tub / "img_corrupt" / names[0])
    with pytest.raises(DataError, match=r"record 10 \(line 11\): image is empty \(0 bytes"):
        read_log(tub)
    kept = read_log(tub, on_error="skip")
    assert len(kept) == RECORDS - 2 and 10 not in kept.row and 12 not in kept.row
    report = check([tub])
    assert (report.empty_images, report.missing_images, report.rows) == (1, 1, RECORDS - 2)
    assert "1 missing, 1 empty (0 bytes)" in report.format()


@pytest.mark.parametrize("jump_s", [-3600.0, 86400.0])
def test_a_clock_going_back_or_a_day_long_pause_starts_a_new_session(tub, jump_s):
    lines = catalog_lines(tub)
    records = [json.loads(line) for line in lines if line]
    for record in records:
        record.pop("_session_id")  # older donkeycar versions write no session ids
    for record in records[25:]:
        record["_timestamp_ms"] += jump_s * 1000
    write_catalog(tub, [json.dumps(r) for r in records])
    log = read_log(tub)
    assert list(np.unique(log.recording, return_counts=True)[1]) == [25, RECORDS - 25]
    assert check([tub]).recordings == 2


def test_session_ids_split_sessions_where_the_clock_alone_would_not(tub):
    lines = catalog_lines(tub)
    records = [json.loads(line) for line in lines if line]
    for record in records[30:]:
        record["_session_id"] = "22-11-29_1"
    write_catalog(tub, [json.dumps(r) for r in records])
    assert list(np.unique(read_log(tub).recording, return_counts=True)[1]) == [30, RECORDS - 30]


@pytest.mark.parametrize("height", [96, 120])
def test_the_default_crop_fits_frames_of_96_and_120_rows(tub, height):
    from data_tools.preprocess import default_crop, preprocess

    names = sorted((tub / "images").iterdir())
    for path in names:
        frame = read_frame(path)
        write_frame(path, frame[frame.shape[0] - height:])
    frame = read_frame(names[0])
    top, bottom = default_crop(frame.shape[0])
    assert frame.shape[:2] == (height, 160) and height - top - bottom >= 32
    assert preprocess(frame[None].astype(np.float32), crop=(top, bottom)).shape == (1, 66, 200, 3)


def test_train_skips_few_bad_records_and_refuses_many(tub, tmp_path):
    from e2e_drive.train import train

    names = [json.loads(line)["cam/image_array"] for line in catalog_lines(tub) if line]
    (tub / "images" / names[3]).write_bytes(b"")
    options = dict(epochs=1, batch_size=8, epoch_samples=0, verbose=0, cache="none", select_by="last")
    with pytest.raises(DataError, match=r"record 3 \(line 4\): image is empty"):
        train([str(tub)], tmp_path / "strict", **options)
    result = train([str(tub)], tmp_path / "skip", skip_bad=True, **options)
    assert result.num_train + result.num_val == RECORDS - 1
    for name in names[4:8]:
        (tub / "images" / name).unlink()
    with pytest.raises(DataError, match=r"^--skip-bad: 5 of 40 rows are bad \(12.5%, more than --max-bad 0.05\); "
                                        r"first: .*record 3"):
        train([str(tub)], tmp_path / "many", skip_bad=True, **options)
    result = train([str(tub)], tmp_path / "allowed", skip_bad=True, max_bad=0.2, **options)
    assert result.num_train + result.num_val == RECORDS - 5


def test_a_2016_udacity_log_with_linux_paths_reads_like_the_original(udacity_sim_a, tmp_path):
    """The 2016 simulator wrote ``", "`` separators, absolute Linux paths of the recording machine, no header."""
    original = read_log(udacity_sim_a)
    folder = tmp_path / "log"
    folder.mkdir()
    os.symlink(udacity_sim_a / "IMG", folder / "IMG")
    lines = []
    for line in (udacity_sim_a / "driving_log.csv").read_text().splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        cells[:3] = ["/home/carnd/data/IMG/" + cell.split("\\")[-1] for cell in cells[:3]]
        lines.append(", ".join(cells))
    (folder / "driving_log.csv").write_text("\n".join(lines) + "\n")
    moved = read_log(folder)
    assert len(moved) == len(original) == 613
    for camera in ("center", "left", "right"):
        assert [Path(p).name for p in moved.images[camera]] == [Path(p).name for p in original.images[camera]]
    np.testing.assert_array_equal(moved.steering, original.steering)
    np.testing.assert_array_equal(moved.speed, original.speed)


def test_a_tub_without_throttle_trains_steering_and_refuses_a_throttle_head(tub, tmp_path):
    """A throttle that was never recorded is NaN, not 0: a throttle head would learn made-up labels."""
    from e2e_drive.train import train

    records = [json.loads(line) for line in catalog_lines(tub) if line]
    for record in records:
        record.pop("user/throttle")
    write_catalog(tub, [json.dumps(r) for r in records])
    assert np.isnan(read_log(tub).throttle).all()
    options = dict(epochs=1, batch_size=8, epoch_samples=0, verbose=0, cache="none")
    with pytest.raises(DataError, match=r"^--targets: 40 of 40 rows record no throttle \(first: .*record 0\); "
                                        r"train --targets steering"):
        train([str(tub)], tmp_path / "both", targets=("steering", "throttle"), **options)
    assert train([str(tub)], tmp_path / "steering", **options).epochs_run == 1


def test_data_check_counts_missing_and_repeated_time_stamps(tub):
    records = [json.loads(line) for line in catalog_lines(tub) if line]
    records[6]["_timestamp_ms"] = records[5]["_timestamp_ms"]
    records[7]["_timestamp_ms"] = records[5]["_timestamp_ms"]
    del records[20]["_timestamp_ms"]
    write_catalog(tub, [json.dumps(r) for r in records])
    report = check([tub], decode=False)
    assert (report.missing_timestamps, report.repeated_timestamps, report.backward_timestamps) == (1, 2, 0)
    assert "time stamps:    1 missing, 2 repeated, 0 going backwards" in report.format()
