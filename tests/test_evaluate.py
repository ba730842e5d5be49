"""Evaluation: metrics against hand-computed values, end to end against Keras' own predict."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_tools.frames import read_frame
from tests.builders import CROP, synthetic_log


def test_metrics_known_values():
    from e2e_drive.evaluate import metrics

    label = np.array([0.0, 0.5, -0.5, 0.0])
    prediction = np.array([0.1, 0.4, -0.5, -0.2])
    report = metrics(prediction, label, smoothed=label * 0.5, mean=0.0)
    assert report["count"] == 4
    # errors 0.1, -0.1, 0, -0.2 -> MSE (0.01 + 0.01 + 0 + 0.04) / 4 = 0.015
    assert report["raw"]["model"]["rmse"] == pytest.approx(np.sqrt(0.015))
    assert report["raw"]["model"]["mae"] == pytest.approx(0.1)
    assert report["raw"]["mean_baseline"]["rmse"] == pytest.approx(np.sqrt(0.125))
    assert report["raw"]["model"]["pearson"] == pytest.approx(np.corrcoef(prediction, label)[0, 1])
    assert np.isnan(report["raw"]["mean_baseline"]["pearson"])  # a constant has no correlation
    # smoothed target 0, .25, -.25, 0: errors .1, .15, -.25, -.2
    assert report["smoothed"]["model"]["mae"] == pytest.approx(0.7 / 4)
    bins = {(b["low"], b["high"]): b for b in report["by_steering_bin"]}
    assert bins[(-0.02, 0.02)]["count"] == 2 and bins[(0.3, 1.0)]["count"] == 1
    assert bins[(-0.02, 0.02)]["model"]["mae"] == pytest.approx(0.15)
    assert sum(b["count"] for b in report["by_steering_bin"]) == 4


def test_evaluate_matches_keras_predict_and_plots(tmp_path):
    from e2e_drive.evaluate import evaluate
    from e2e_drive.models import pilotnet
    from data_tools import smooth_steering

    log = synthetic_log(tmp_path / "frames", n=20)
    model = pilotnet((40, 80, 3), crop=CROP, seed=0)
    model.save(tmp_path / "m.keras")
    frames = np.stack([read_frame(p) for p in log.images["center"]])
    expected = model.predict(frames, verbose=0).reshape(-1).astype(np.float64)
    report = evaluate(str(tmp_path / "m.keras"), log, smooth_sigma=2.0, batch_size=8, plot=str(tmp_path / "p.png"))
    assert report["raw"]["model"]["rmse"] == pytest.approx(np.sqrt(np.mean((expected - log.steering) ** 2)), rel=1e-4)
    baseline = np.full(len(log), log.steering.mean())
    assert report["raw"]["mean_baseline"]["mae"] == pytest.approx(np.mean(np.abs(baseline - log.steering)), rel=1e-5)
    smoothed = smooth_steering(log, 2.0).steering
    assert not np.allclose(smoothed, log.steering)
    assert report["smoothed"]["model"]["mae"] == pytest.approx(np.mean(np.abs(expected - smoothed)), rel=1e-4)
    assert "throttle" not in report  # a steering-only model: the report is the steering one alone
    png = (tmp_path / "p.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_evaluate_errors(tmp_path):
    from e2e_drive.evaluate import evaluate
    from e2e_drive.models import pilotnet

    log = synthetic_log(tmp_path / "frames", n=4)
    model = pilotnet((48, 96, 3), crop=CROP)
    with pytest.raises(ValueError, match=r"takes frames of shape \(48, 96, 3\).*frames0?.*\(40, 80, 3\)"):
        evaluate(model, log)
    with pytest.raises(FileNotFoundError, match="nope.keras: model file does not exist"):
        evaluate(str(tmp_path / "nope.keras"), log)


def test_cli_evaluate_json_on_a_udacity_folder(tmp_path, capsys):
    """The CLI wraps the same function; the data goes through the real Udacity reader."""
    import json

    from e2e_drive.cli import main
    from e2e_drive.evaluate import evaluate
    from e2e_drive.models import pilotnet

    log = synthetic_log(tmp_path / "sim" / "IMG", n=12)
    lines = [f"{log.images['center'][i]}, {log.images['left'][i]}, {log.images['right'][i]}, "
             f"{log.steering[i]}, 0.5, 0, 20.0" for i in range(len(log))]
    (tmp_path / "sim" / "driving_log.csv").write_text("\n".join(lines) + "\n")
    pilotnet((40, 80, 3), crop=CROP, seed=0).save(tmp_path / "m.keras")
    code = main(["evaluate", str(tmp_path / "m.keras"), str(tmp_path / "sim"), "--json", "--plot",
                 str(tmp_path / "e.png")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    direct = evaluate(str(tmp_path / "m.keras"), log)
    assert report["count"] == 12 and (tmp_path / "e.png").is_file()
    assert report["smoothed"]["model"]["rmse"] == pytest.approx(direct["smoothed"]["model"]["rmse"], rel=1e-5)
    assert main(["evaluate", str(tmp_path / "missing.keras"), str(tmp_path / "sim")]) == 2
    assert "missing.keras: model file does not exist" in capsys.readouterr().err


def test_evaluate_replays_the_model_on_a_log_with_time_and_speed(tmp_path):
    from data_tools import read_log
    from e2e_drive.evaluate import evaluate, format_report
    from e2e_drive.models import pilotnet, steering_function
    from e2e_drive.replay import replay
    from e2e_drive.sim import make_track, record

    record(make_track(3), tmp_path / "rec", laps=0.3, progress=False)
    log = read_log(tmp_path / "rec")
    model = pilotnet((160, 320, 3), seed=0)
    report = evaluate(model, log)
    # A simulator recording is replayed with the simulator's car and camera (its recording.json says so).
    # Whole segments, as the end of train scores its validation span.
    expected = replay(log, steering_function(model), profile="sim").summary()
    assert report["replay"]["car"] == "sim"
    assert report["replay"]["points_per_intervention"] == pytest.approx(600.0 / expected["elapsed_seconds"])
    assert report["replay"]["too_short"] == (600.0 / expected["elapsed_seconds"] > 20.0)
    assert report["replay"]["autonomy"] == pytest.approx(expected["autonomy"])
    assert report["replay"]["mean_abs_offset"] == pytest.approx(expected["mean_abs_offset"])
    assert report["replay"]["frames"] == expected["frames"] > 0
    assert "replay (closed loop on the log): autonomy" in format_report(report)
    assert "replay" not in evaluate(model, log, replay=False)
    # With a plot of where it strayed.
    plotted = evaluate(model, log, replay_plot=tmp_path / "replay.png")["replay"]
    assert plotted["plot"] == str(tmp_path / "replay.png") and cv2.imread(plotted["plot"]) is not None
    assert plotted["frames"] == expected["frames"]


def test_evaluate_replays_a_tub_at_the_given_speed(tmp_path):
    from deploy import load_predictor
    from e2e_drive.evaluate import evaluate
    from e2e_drive.models import pilotnet
    from data_tools import read_log
    from e2e_drive.evaluate import format_report
    from e2e_drive.replay import get_profile, reconstruct, replay
    from e2e_drive.sim import record

    tub = tmp_path / "tub"
    record(7, tub, laps=0.1, progress=False, format="tub")
    (tub / "recording.json").unlink()  # a plain donkeycar tub: time stamps, no speed column
    model_path = tmp_path / "m.keras"
    pilotnet((160, 320, 3), seed=0).save(model_path)
    assert "--speed" in evaluate(model_path, [str(tub)])["replay"]["skipped"]
    report = evaluate(model_path, [str(tub)], speed=2.0)["replay"]
    expected = replay(tub, load_predictor(model_path), profile="donkey", speed=2.0).total
    assert report["car"] == "donkey" and report["frames"] == expected.frames > 0
    assert report["interventions"] == expected.interventions
    assert report["mean_abs_offset"] == pytest.approx(expected.mean_abs_offset, abs=1e-3)
    # How strictly that span judges: the tub's own steering 0.1 s late, driven blind with the same car and speed.
    late = replay(tub, "recorded", profile="donkey", speed=2.0,
                  trajectories=[reconstruct(read_log(tub), get_profile("donkey"), speed=2.0).late(0.1)]).total
    assert report["late_interventions"] == late.interventions
    assert report["late_autonomy"] == pytest.approx(late.autonomy)
    assert report["strict"] == (late.autonomy < 50.0) == False  # noqa: E712 (the sim's expert, 0.1 s late, drives)
    # A speed the car never drove at (three times as fast) makes the span fail even that driver: said, not hidden.
    strict = evaluate(model_path, [str(tub)], speed=6.0)
    assert strict["replay"]["strict"] and strict["replay"]["late_interventions"] > 0
    assert "a strict span: the recorded steering 0.1 s late scores" in format_report(strict)
    assert "a strict span" not in format_report(evaluate(model_path, [str(tub)], speed=2.0))


def test_evaluate_says_why_a_log_cannot_be_replayed(tmp_path, synthetic_log):
    from e2e_drive.evaluate import evaluate
    from e2e_drive.models import pilotnet

    log = synthetic_log(tmp_path / "frames", n=8)  # no time stamps, no speed
    report = evaluate(pilotnet((40, 80, 3), crop=(4, 4), seed=0), log)
    assert "no time stamps" in report["replay"]["skipped"]
