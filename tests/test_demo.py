"""``e2e-drive demo --quick`` end to end: record -> train -> drive on an unseen track -> measure."""

from __future__ import annotations

import csv
import json

import cv2

from e2e_drive.cli import main


def test_demo_quick_trains_a_network_that_beats_constant_steering(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert json.loads((out / "summary.json").read_text())["drive"] == summary["drive"]
    assert set(summary["train_tracks"]).isdisjoint(summary["test_tracks"])
    # The demo went through real Udacity-format recordings.
    rows = sum(len(list(csv.reader(open(out / "recordings" / f"track_{seed}" / "driving_log.csv"))))
               for seed in summary["train_tracks"])
    assert rows > 100 and summary["num_train"] > 0 and summary["num_val"] > 0
    assert 0 < summary["val_rmse"] < 0.2
    for network, constant in zip(summary["drive"], summary["constant_steering"]):
        assert network["track_seed"] == constant["track_seed"]
        assert constant["interventions"] > 0
        assert network["autonomy"] > constant["autonomy"] + 50
        assert network["mean_abs_offset"] < constant["mean_abs_offset"]
        assert network["laps_completed"] > 0.45
    assert cv2.imread(str(out / "paths.png")) is not None
    if "path" in summary["onnx"]:  # deploy installed: the exported ONNX file drives as well as Keras
        assert summary["onnx"]["passed"]
        for onnx, constant in zip(summary["onnx_drive"], summary["constant_steering"]):
            assert onnx["autonomy"] > constant["autonomy"] + 50


def test_demo_refuses_to_overwrite_a_foreign_run_or_to_test_on_training_tracks(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert "not from an earlier demo" in capsys.readouterr().err
    assert (tmp_path / "train").is_dir() and not (tmp_path / "recordings").exists()
    assert main(["demo", "--train-tracks", "1", "2", "--test-tracks", "2", "--out", str(tmp_path / "d")]) == 2
    assert "must be unseen" in capsys.readouterr().err
