"""Recording (Udacity format, round trip), closed-loop driving, predictors, CLI and bench of the simulator."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_tools import read_log, read_udacity
from data_tools.frames import read_frame
from e2e_drive.cli import main
from deploy import load_predictor
from e2e_drive.sim import Camera, autonomy, drive, make_track, record


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "track 5 é"  # spaces and non-ASCII in the path
    result = record(make_track(5), out, laps=0.12, seed=3, progress=False)
    return out, result


def test_recording_is_a_udacity_log(recording):
    out, result = recording
    with open(out / "driving_log.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == result.rows > 30
    assert all(len(row) == 7 for row in rows)
    float(rows[0][3])  # no header row: the first row is data
    steering = np.array([float(r[3]) for r in rows])
    speed = np.array([float(r[6]) for r in rows])
    assert np.all(np.abs(steering) <= 1) and np.std(steering) > 0
    np.testing.assert_allclose(speed, 8.0 * 2.2369363, rtol=1e-4)  # mph, like the Udacity simulator
    for column, name in enumerate(("center", "left", "right")):
        assert rows[0][column].startswith(str(out / "IMG" / name))
    assert not list(out.glob("*.tmp"))  # the CSV was renamed into place
    # The first centre image is the camera's view of the start pose (up to JPEG loss).
    track = make_track(5)
    expected = Camera(track).render(*track.centre[0], track.heading[0]).astype(int)
    stored = read_frame(rows[0][0]).astype(int)
    assert stored.shape == (160, 320, 3) and np.abs(stored - expected).mean() < 4


def test_recording_is_deterministic(tmp_path, recording):
    _, first = recording
    again = record(make_track(5), tmp_path / "again", laps=0.12, seed=3, progress=False)
    steering = lambda path: [row[3] for row in csv.reader(open(path, newline=""))]
    assert steering(first.csv_path) == steering(again.csv_path)


def test_recording_round_trips_through_read_udacity(recording):
    out, result = recording
    log = read_udacity([str(out)])
    assert len(log) == result.rows
    rows = list(csv.reader(open(out / "driving_log.csv", newline="")))
    np.testing.assert_allclose(log.steering, [float(r[3]) for r in rows], atol=1e-6)
    assert set(log.cameras) >= {"center", "left", "right"}
    assert read_frame(log.images["right"][-1]).shape == (160, 320, 3)
    assert len(read_log([str(out)])) == result.rows


class CountingPredictor:
    """Constant steering that records the batch sizes it is called with."""

    def __init__(self, value: float = 0.0):
        self.value = value
        self.batches: list[tuple[int, ...]] = []

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        assert frames.dtype == np.uint8 and frames.shape[1:] == (160, 320, 3)
        self.batches.append(frames.shape)
        return np.full(len(frames), self.value, np.float32)


def test_drive_steps_cars_together_and_scores_interventions(tmp_path):
    tracks = [make_track(101), make_track(102)]
    predictor = CountingPredictor(0.0)
    video = tmp_path / "run.mp4"
    results = drive(predictor, tracks, laps=0.3, video=video, progress=False)
    assert predictor.batches[0][0] == 2  # both cars in one batch
    for result, track in zip(results, tracks):
        assert result.laps_completed == pytest.approx(0.3, abs=0.02)
        assert result.interventions > 0  # straight ahead on a loop leaves the road
        assert result.autonomy == pytest.approx(autonomy(result.interventions, result.elapsed_seconds))
        assert result.max_abs_offset > track.intervention_offset.min()
        assert len(result.path) == len(result.steering) == round(result.elapsed_seconds * 10)
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(predictor.batches)
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    assert not list(tmp_path.glob("*.partial.mp4"))
    capture.release()


def test_hard_right_turns_right_and_is_deterministic():
    track = make_track(101)
    first = drive(CountingPredictor(1.0), [track], laps=0.05, max_seconds=1.0, progress=False)[0]
    again = drive(CountingPredictor(1.0), [track], laps=0.05, max_seconds=1.0, progress=False)[0]
    np.testing.assert_array_equal(first.path, again.path)
    heading = track.heading[0]
    right = np.array([np.sin(heading), -np.cos(heading)])
    assert (first.path[6] - track.centre[0]) @ right > 0.5


def test_drive_rejects_a_predictor_with_the_wrong_output():
    with pytest.raises(ValueError, match="one finite steering per frame"):
        drive(lambda frames: np.zeros((len(frames), 2)), [make_track(101)], laps=0.1, progress=False)
    with pytest.raises(ValueError, match="laps"):
        drive(CountingPredictor(), [make_track(101)], laps=0)


def test_load_predictor_runs_a_saved_keras_model(tmp_path):
    import keras

    from data_tools.frame_preprocess import FramePreprocess

    inputs = keras.Input((160, 320, 3), dtype="uint8")
    x = FramePreprocess(crop=(60, 25))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Reshape(())(keras.layers.Dense(1, activation="tanh")(x))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "tiny.keras"
    model.save(path)
    frames = np.random.default_rng(0).integers(0, 256, (3, 160, 320, 3), dtype=np.uint8)
    predicted = load_predictor(path)(frames)
    np.testing.assert_allclose(np.ravel(predicted), np.ravel(model(frames)), atol=1e-5)
    with pytest.raises(FileNotFoundError):
        load_predictor(tmp_path / "missing.keras")
    # The console script in a fresh process (where nothing is registered yet) drives with the saved file.
    plot = tmp_path / "paths.png"
    result = subprocess.run([sys.executable, "-m", "e2e_drive", "sim", "drive", str(path), "--track", "101", "102",
                             "--laps", "0.05", "--plot", str(plot), "--json"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(result.stdout)
    assert [t["track_seed"] for t in payload["tracks"]] == [101, 102]
    image = cv2.imread(str(plot))  # a map per track, side by side
    assert payload["plot"] == str(plot) and image is not None and image.shape[1] > 1.5 * image.shape[0]
    # The simulator is deterministic: the other process drove exactly what this one drives with the same file.
    from e2e_drive.sim import drive

    here = [r.summary() for r in drive(load_predictor(path), [101, 102], laps=0.05, progress=False)]
    for theirs, ours in zip(payload["tracks"], here):
        assert theirs["interventions"] == ours["interventions"], (theirs, ours)
        for key in ("autonomy", "laps_completed", "elapsed_seconds", "mean_abs_offset"):
            assert theirs[key] == pytest.approx(ours[key], rel=1e-4, abs=1e-6), key
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="broken.keras"):
        load_predictor(broken)


def test_cli_record_and_bench(tmp_path, capsys):
    assert main(["sim", "record", "--track", "9", "--laps", "0.05", "--out", str(tmp_path / "r"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"] == len(open(payload["csv"]).readlines()) and payload["images"] == 3 * payload["rows"]
    assert main(["bench", "sim", "--frames", "20", "--baseline-frames", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 20 and report["raycast_frames"] == 2 and report["speedup_vs_raycast"] > 1
    assert main(["sim", "drive", str(tmp_path / "nope.keras")]) == 2
    assert "model not found" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["sim", "record", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert _exit_code(["sim", "record", "--track", "-3", "--out", str(tmp_path / "neg")]) == 2
    assert "expected an integer in 0..4294967295 (a seed)" in capsys.readouterr().err
    assert _exit_code(["sim", "record", "--laps", "0", "--out", str(tmp_path / "zero")]) == 2
    assert "expected a number in (0, 100]" in capsys.readouterr().err
    # A tub from the CLI (donkeycar's own reader is tested in test_donkeycar.py).
    assert main(["sim", "record", "--track", "9", "--laps", "0.03", "--out", str(tmp_path / "tub"), "--format", "tub",
                 "--json"]) == 0
    capsys.readouterr()
    assert (tmp_path / "tub" / "manifest.json").is_file() and len(read_log([str(tmp_path / "tub")])) > 0


def _exit_code(argv) -> int:
    """main's return code, or argparse's exit code for a flag rejected at parse time."""
    try:
        return main(argv)
    except SystemExit as exit:
        return int(exit.code)
