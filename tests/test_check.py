"""``check`` and ``e2e-drive data check``: counts real problems without stopping at the first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from data_tools import check
from e2e_drive.cli import main
from tests.builders import BAD_ROWS, make_udacity_log as make_log


def test_real_log_report(udacity_sim_a):
    report = check(udacity_sim_a)
    assert report.ok and report.rows == 613 and report.images_checked == 1839
    assert report.image_sizes == {"320x160": 1839}
    assert 0.706 <= report.near_zero_fraction < 0.75  # 70.6% exactly 0 (PROVENANCE.md), a few more |s| < 0.01
    assert sum(report.histogram_counts) == 613


def test_finds_every_kind_of_problem(tmp_path):
    make_log(tmp_path, n=4, rows=[row for row, _ in BAD_ROWS[:5]])
    (tmp_path / "IMG" / "left_001.jpg").write_bytes(b"")  # zero-byte JPEG
    (tmp_path / "IMG" / "right_002.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    report = check(tmp_path)
    assert not report.ok
    assert report.rows == 4
    assert (report.non_numeric, report.non_finite, report.out_of_range, report.malformed) == (1, 2, 1, 1)
    assert report.unreadable_images == 2
    assert report.problem_count == 7
    assert any("left_001.jpg" in p and "empty (0 bytes)" in p and "row 2" in p for p in report.problems)
    assert any("right_002.jpg" in p and "not a decodable image" in p for p in report.problems)
    skipped = check(tmp_path, on_error="skip")
    assert skipped.skipped_rows == 5 and skipped.problem_count == 2


def test_cli_json_plot_and_exit_codes(tmp_path, capsys):
    good = make_log(tmp_path / "good", n=3)
    png = tmp_path / "hist.png"
    assert main(["data", "check", str(good), "--json", "--plot", str(png)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] and payload["rows"] == 3 and payload["cameras"] == ["center", "left", "right"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = make_log(tmp_path / "bad", n=2, rows=[BAD_ROWS[3][0]])
    assert main(["data", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 1 problem(s)" in out and "row 3" in out
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 1
    assert "no such file or folder" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "nowhere"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["steering_mean"] is None  # strict JSON: no NaN
    assert main(["data", "check", str(tmp_path / "nowhere"), str(good), "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"] == 3 and payload["problems"] == [f"{tmp_path / 'nowhere'}: no such file or folder"]


def test_real_tub_report_counts_deleted_records(donkey_tub_a):
    report = check(donkey_tub_a)
    assert report.ok and report.rows == 225 and report.deleted_records == 25
    assert report.cameras == ["center"] and report.images_checked == 225
    assert "deleted records: 25" in report.format()


def test_importing_data_tools_loads_neither_tensorflow_nor_augmentation():
    code = ("import sys, data_tools; assert 'tensorflow' not in sys.modules; "
            "assert 'data_tools.augment' not in sys.modules; "
            "assert data_tools.augment.HorizontalFlip and data_tools.preview.preview_samples; "
            "assert not hasattr(data_tools, 'no_such_name')")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
