"""Issue 11, "Nothing lost, nothing silent": every kind of bad input ends in a DataError naming the file and
the row/line (or is counted, line by line, when skipping), never in a wrong answer, a traceback or a huge
allocation."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_tools import DataError, check, read_frame, read_log, read_tub, read_udacity
from data_tools.check import plot_histogram
from data_tools.frames import MAX_FRAME_SIDE, image_size
from tests.builders import make_tub, make_udacity_log as make_log

HEADER = "center,left,right,steering,throttle,brake,speed"


def data_lines(folder: Path) -> list[str]:
    return (folder / "driving_log.csv").read_text(encoding="utf-8").splitlines()


def write_lines(folder: Path, lines: list[str], newline: str = "\n", bom: bool = False) -> Path:
    data = (newline.join(lines) + newline).encode("utf-8")
    (folder / "driving_log.csv").write_bytes(b"\xef\xbb\xbf" + data if bom else data)
    return folder / "driving_log.csv"


# --- columns by name ------------------------------------------------------------------------------------------------

def test_reordered_header_maps_columns_by_name(tmp_path):
    make_log(tmp_path, n=4)
    # center,left,right,throttle,steering,brake,speed: throttle (0.5) would become the steering by position.
    lines = ["center,left,right,throttle,steering,brake,speed"]
    for line in data_lines(tmp_path):
        cells = [c.strip() for c in line.split(",")]
        lines.append(",".join(cells[:3] + [cells[4], cells[3]] + cells[5:]))
    write_lines(tmp_path, lines)
    log = read_udacity(tmp_path)
    np.testing.assert_allclose(log.steering, [-0.5, -0.25, 0.0, 0.25])
    np.testing.assert_allclose(log.throttle, 0.5)
    np.testing.assert_allclose(log.speed, [20, 21, 22, 23])
    assert log.row.tolist() == [1, 2, 3, 4]


def test_common_spellings_and_optional_side_cameras(tmp_path):
    make_log(tmp_path, n=3)
    lines = ["Speed, Steering Angle, Throttle, Brake, Centre Image"]
    for line in data_lines(tmp_path):
        center, _, _, steering, throttle, brake, speed = (c.strip() for c in line.split(","))
        lines.append(", ".join([speed, steering, throttle, brake, center]))
    write_lines(tmp_path, lines)
    log = read_udacity(tmp_path)
    np.testing.assert_allclose(log.steering, [-0.5, -1 / 6, 1 / 6], atol=1e-3)
    np.testing.assert_allclose(log.speed, [20, 21, 22])
    assert log.cameras == ("center",) and Path(log.images["center"][1]).name == "center_001.jpg"


def test_header_missing_a_column_names_it(tmp_path):
    make_log(tmp_path, n=3)
    lines = ["center,left,right,throttle,brake,speed"] + [
        ",".join(c for i, c in enumerate(line.split(",")) if i != 3) for line in data_lines(tmp_path)]
    write_lines(tmp_path, lines)
    for on_error in ("raise", "skip"):  # a file-level problem: skipping rows cannot help
        with pytest.raises(DataError, match=r"driving_log\.csv, line 1: the header lacks the column\(s\) steering "):
            read_udacity(tmp_path, on_error=on_error)


def test_cli_reads_a_reordered_header_right_and_fails_a_header_without_steering(tmp_path, capsys):
    from e2e_drive.cli import main

    good = make_log(tmp_path / "good", n=4)
    lines = ["CENTER,LEFT,RIGHT,THROTTLE,STEERING,BRAKE,SPEED"]
    for line in data_lines(good):
        cells = [c.strip() for c in line.split(",")]
        lines.append(",".join(cells[:3] + [cells[4], cells[3]] + cells[5:]))
    write_lines(good, lines)
    assert main(["data", "check", str(good), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"] == 4 and payload["steering_min"] == -0.5 and payload["steering_max"] == 0.25

    bad = make_log(tmp_path / "bad", n=2)
    write_lines(bad, ["center,left,right,angle_deg,throttle,brake,speed"] + data_lines(bad))
    assert main(["data", "check", str(bad), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert problems == [f"{bad / 'driving_log.csv'}, line 1: the header lacks the column(s) steering "
                        f"(header: center, left, right, angle_deg, throttle, brake, speed; expected names like "
                        f"center, left, right, steering, throttle, brake, speed)"]


# --- unclosed quotes, huge fields: every physical line counted ---------------------------------------------------------

def test_unclosed_quote_names_the_line_and_swallows_nothing(tmp_path):
    make_log(tmp_path, n=25, header=True)
    lines = data_lines(tmp_path)
    lines[5] = '"IMG/center_004.jpg, IMG/left_004.jpg, IMG/right_004.jpg, 0.1, 0.5, 0, 24'  # line 6, data row 5
    write_lines(tmp_path, lines)
    with pytest.raises(DataError) as info:
        read_udacity(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'driving_log.csv'}, row 5 (line 6): unclosed quote")
    log = read_udacity(tmp_path, on_error="skip")
    assert len(log) == 24 and len(log.skipped) == 1 and "row 5 (line 6): unclosed quote" in log.skipped[0]
    assert len(log) + len(log.skipped) + 1 == len(lines)  # every physical line: 24 rows, 1 skipped, the header
    assert log.row.tolist() == [1, 2, 3, 4] + list(range(6, 26))
    report = check(tmp_path, on_error="skip", decode=False)
    assert report.ok and report.rows == 24 and report.skipped_rows == 1 and report.malformed == 1


def test_huge_field_is_a_data_error_naming_file_and_row(tmp_path):
    make_log(tmp_path, n=3)
    lines = data_lines(tmp_path)
    write_lines(tmp_path, lines[:1] + ["x" * 200_000 + ", a, b, 0, 0, 0, 1"] + lines[1:])
    with pytest.raises(DataError, match=r"driving_log\.csv, row 2: a field of 200000 characters is longer than "
                                        r"the CSV field limit"):
        read_udacity(tmp_path)
    log = read_udacity(tmp_path, on_error="skip")
    assert log.row.tolist() == [1, 3, 4] and len(log.skipped) == 1
    report = check(tmp_path, decode=False)
    assert not report.ok and report.problem_count == 1 and report.malformed == 1 and report.rows == 3


def test_encoding_bom_crlf_and_latin1(tmp_path):
    make_log(tmp_path, n=3)
    write_lines(tmp_path, [HEADER] + data_lines(tmp_path), newline="\r\n", bom=True)
    log = read_udacity(tmp_path)
    assert log.row.tolist() == [1, 2, 3] and log.images["right"][2].endswith("right_002.jpg")
    (tmp_path / "driving_log.csv").write_bytes(b"\n".join(line.encode() for line in data_lines(tmp_path)[:3])
                                               + b"\nIMG/centr\xe9.jpg, IMG/l.jpg, IMG/r.jpg, 0, 0, 0, 1\n")
    with pytest.raises(DataError, match=r"driving_log\.csv: not a UTF-8 text CSV \(invalid continuation byte at "
                                        r"line 4, byte \d+; save it as UTF-8\)"):
        read_udacity(tmp_path)


# --- the right row -----------------------------------------------------------------------------------------------------

def test_bad_first_row_under_a_header_is_row_1(tmp_path):
    make_log(tmp_path, n=3, header=True)
    (tmp_path / "IMG" / "center_000.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    report = check(tmp_path)
    assert report.problems == [
        f"{tmp_path / 'driving_log.csv'}, row 1 (center camera): not a decodable image (corrupt or wrong format: "
        f"JPEG ends before its frame header (truncated?)): {(tmp_path / 'IMG' / 'center_000.jpg').resolve()}"]
    lines = data_lines(tmp_path)
    write_lines(tmp_path, lines[:1] + [lines[1].replace("-0.500", "7")] + lines[2:])
    with pytest.raises(DataError, match=r"driving_log\.csv, row 1 \(line 2\): steering 7.0 is outside"):
        read_udacity(tmp_path)


def test_odd_size_frame_in_the_first_row_is_the_one_named(tmp_path):
    make_log(tmp_path, n=4)
    cv2.imwrite(str(tmp_path / "IMG" / "center_000.jpg"), np.zeros((20, 20, 3), np.uint8))
    report = check(tmp_path)
    assert report.problem_count == 1
    assert report.problems[0] == (
        "frames of different sizes in one log (32x16: 11, 20x20: 1); not 32x16: "
        f"{tmp_path / 'driving_log.csv'}, row 1 (center camera): {(tmp_path / 'IMG' / 'center_000.jpg').resolve()} "
        "is 20x20")


# --- frames: size from the header, before any decode -----------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR says width x height, with a few bytes of image data (nowhere near the whole image)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, a baseline frame header (SOF0) for width x height, EOI: written by hand."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


@pytest.mark.parametrize("suffix,header", [(".png", png_header), (".jpg", jpeg_header)])
def test_huge_image_is_refused_from_its_header(tmp_path, suffix, header):
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(header(20000, 20000))
    assert image_size(path) == image_size(path.read_bytes()) == (20000, 20000)
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        read_frame(path, where="log.csv, row 3")
    assert time.perf_counter() - start < 0.5  # no 1.2 GB allocation, no decode
    assert str(info.value) == (f"log.csv, row 3: image is 20000x20000, larger than the 4096x4096 a camera frame "
                               f"may be (data_tools.frames.MAX_FRAME_SIDE): {path}")


def test_huge_image_in_a_log_is_named_by_check(tmp_path):
    make_log(tmp_path, n=2)
    (tmp_path / "IMG" / "left_001.jpg").write_bytes(jpeg_header(20000, 20000))
    report = check(tmp_path)
    assert report.unreadable_images == 1 and report.problem_count == 1
    assert report.problems[0].startswith(f"{tmp_path / 'driving_log.csv'}, row 2 (left camera): image is 20000x20000")


def test_image_size_matches_the_decoder(tmp_path):
    rng = np.random.default_rng(0)
    cases = [((16, 32), ".jpg", []), ((37, 53), ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), ((5, 700), ".png", []),
             ((37, 53), ".bmp", []), ((37, 53), ".webp", []), ((9, 11), ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])]
    for (height, width), suffix, params in cases:
        ok, encoded = cv2.imencode(suffix, rng.integers(0, 255, (height, width, 3), dtype=np.uint8), params)
        assert ok
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        assert image_size(encoded) == (decoded.shape[1], decoded.shape[0]) == (width, height), suffix
    # The limit is on either side: a 4097x1 frame is refused, a 4096x2 one read.
    for width, refused in ((MAX_FRAME_SIDE + 1, True), (MAX_FRAME_SIDE, False)):
        path = tmp_path / f"wide{width}.png"
        cv2.imwrite(str(path), np.zeros((2, width, 3), np.uint8))
        if refused:
            with pytest.raises(DataError, match=f"image is {width}x2, larger than"):
                read_frame(path)
        else:
            assert read_frame(path).shape == (2, width, 3)
    ok, tiff = cv2.imencode(".tiff", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a.tiff").write_bytes(tiff.tobytes())
    with pytest.raises(DataError, match=r"not a decodable image \(corrupt or wrong format: not a JPEG, PNG, BMP or Web"):
        read_frame(tmp_path / "a.tiff")


# --- tubs: every field's type checked ----------------------------------------------------------------------------------

def rewrite_manifest_line5(tub: Path, **changes) -> Path:
    manifest = tub / "manifest.json"
    lines = manifest.read_text().splitlines()
    catalogs = json.loads(lines[4])
    catalogs.update(changes)
    lines[4] = json.dumps(catalogs)
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.mark.parametrize("changes,message", [
    ({"paths": "catalog_0.catalog"}, "'paths' must be a list of catalog file names, found str 'catalog_0.catalog'"),
    ({"paths": [0]}, "'paths' must be a list of catalog file names, found list [0]"),
    ({"deleted_indexes": ["1"]}, "'deleted_indexes' must be a list of integer record indexes, found list ['1']"),
    ({"deleted_indexes": 1}, "'deleted_indexes' must be a list of integer record indexes, found int 1"),
])
def test_manifest_with_wrong_types_names_the_field(tmp_path, changes, message):
    tub = make_tub(tmp_path / "tub", records=3)
    manifest = rewrite_manifest_line5(tub, **changes)
    for on_error in ("raise", "skip"):
        with pytest.raises(DataError) as info:
            read_tub(tub, on_error=on_error)
        assert str(info.value) == f"{manifest}, line 5: {message}"


def test_manifest_without_paths(tmp_path):
    tub = make_tub(tmp_path / "tub", records=3)
    manifest = tub / "manifest.json"
    lines = manifest.read_text().splitlines()
    lines[4] = json.dumps({"current_index": 3})
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"manifest\.json, line 5: the catalog metadata has no 'paths'"):
        read_tub(tub)


@pytest.mark.parametrize("field,value,message", [
    ("_timestamp_ms", '"1000"', "_timestamp_ms is not a finite number: '1000'"),
    ("user/angle", "[0.1]", "user/angle is not a finite number: [0.1]"),
    ("user/throttle", '"fast"', "user/throttle is not a finite number: 'fast'"),
    ("user/throttle", "NaN", "user/throttle is not a finite number: nan"),
    ("cam/image_array", "7", "cam/image_array is not an image file name: 7"),
    ("_index", "2", "_index 2 repeats catalog_0.catalog, line 3"),
])
def test_catalog_record_with_a_wrong_type_names_record_and_field(tmp_path, field, value, message):
    record = {"_index": 3, "_timestamp_ms": 1003, "cam/image_array": "0_cam_image_array_.jpg", "user/angle": 0.1,
              "user/throttle": 0.2}
    line = json.dumps(record).replace(f'"{field}": {json.dumps(record[field])}', f'"{field}": {value}')
    tub = make_tub(tmp_path / "tub", records=3, deleted=(), extra_lines=[line])
    catalog = tub / "catalog_0.catalog"
    where = "record 2 (line 4)" if field == "_index" else "record 3 (line 4)"
    with pytest.raises(DataError) as info:
        read_tub(tub)
    assert str(info.value) == f"{catalog}, {where}: {message}"
    log = read_tub(tub, on_error="skip")
    assert len(log) == 3 and len(log.skipped) == 1
    report = check(tub, on_error="skip", decode=False)
    assert report.rows == 3 and report.skipped_rows == 1


def test_tub_rows_are_named_as_records(tmp_path):
    tub = make_tub(tmp_path / "tub", records=3, deleted=())
    (tub / "images" / "2_cam_image_array_.jpg").write_bytes(png_header(20000, 20000))
    report = check(tub)
    assert report.problems[0].startswith(f"{tub / 'catalog_0.catalog'}, record 2: image is 20000x20000")


def test_plot_is_written_atomically_with_no_temporary_file(tmp_path):
    make_log(tmp_path / "log", n=3)
    out = tmp_path / "plots" / "hist.png"
    out.parent.mkdir()
    plot_histogram(check(tmp_path / "log", decode=False), str(out))
    assert [p.name for p in out.parent.iterdir()] == ["hist.png"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
