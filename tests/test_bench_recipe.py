"""``e2e-drive bench recipe``: the protocol run for real on a simulated keyboard driver (tiny training), each
figure checked against an independent computation on the held-out rows the run never trained on."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.stats import pearsonr

pytest.importorskip("keras")

from e2e_drive.bench.recipe import format_recipe_report, parse_sim  # noqa: E402

QUICK = dict(epochs=1, epoch_samples=64)
CROP = (56, 24)  # not the default crop of the simulator's 160-row frames: a recipe option given to the benchmark


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The benchmark as a user runs it: the command line, a quick recipe and one changed recipe option."""
    from e2e_drive.cli import main

    out = tmp_path_factory.mktemp("recipe")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["bench", "recipe", "--sim", "keyboard@10", "--sim-laps", "0.6", "--seeds", "2", "--out",
                     str(out), "--epochs", "1", "--epoch-samples", "64", "--crop", "56,24", "--quiet",
                     "--json"]) == 0
    return out, json.loads(printed.getvalue())


def test_each_run_is_scored_on_rows_it_never_trained_on(report):
    from data_tools import read_log
    from deploy import load_predictor
    from e2e_drive.replay import get_profile, reconstruct, replay
    from e2e_drive.sim import drive

    out, result = report
    assert result["recipe"] == {**QUICK, "crop": list(CROP)} and [r["seed"] for r in result["runs"]] == [0, 1]
    recording = read_log(out / "recordings" / "sim_keyboard_10")
    assert np.mean(recording.steering == 0) > 0.2  # a keyboard driver's log
    trained, held = recording.split(0.2)
    steering = []
    for run in result["runs"]:
        run_dir = out / "runs" / f"00_sim_keyboard_10_seed{run['seed']}"
        config = json.loads((run_dir / "config.json").read_text())
        assert config["num_train"] + config["num_val"] == len(trained) == run["training"]["rows"]
        assert config["crop"] == list(CROP)
        assert run["held_out_rows"] == len(held) == round(0.2 * len(recording)) and run["rows"] == len(recording)
        predictor = load_predictor(run_dir / "best.keras")
        predicted = predictor(np.stack([_frame(p) for p in held.images["center"]]))
        steering.append(predicted)
        smoothed = gaussian_filter1d(held.steering.astype(np.float64), 4.0, mode="nearest")
        assert run["offline"]["pearson"] == pytest.approx(pearsonr(predicted, smoothed).statistic, abs=1e-4)
        mean_rmse = np.sqrt(np.mean((smoothed - held.steering.mean()) ** 2))
        rmse = np.sqrt(np.mean((predicted - smoothed) ** 2))
        assert run["offline"]["rmse_vs_mean"] == pytest.approx(rmse / mean_rmse, rel=1e-3)
        replayed = replay(held, predictor, profile="sim").total
        assert run["replay"]["autonomy"] == pytest.approx(replayed.autonomy, abs=1e-6)
        assert run["replay"]["interventions_per_minute"] == pytest.approx(
            replayed.interventions / (replayed.elapsed_seconds / 60))
        assert sum(run["replay"]["interventions_by_bend"].values()) == replayed.interventions
        assert sum(run["replay"]["steps_by_bend"].values()) == len(replayed.steering)
        assert run["offline"]["gain"] == pytest.approx(np.polyfit(smoothed, predicted, 1)[0], rel=1e-3)
        late = replay(held, "recorded", profile="sim",
                      trajectories=[reconstruct(held, get_profile("sim")).late(0.1)]).total
        assert run["replay"]["late_autonomy"] == pytest.approx(late.autonomy)
        (unseen,) = drive(predictor, [101], laps=1.0, fps=10.0, progress=False)
        assert run["simulator"]["autonomy"] == pytest.approx(unseen.autonomy, abs=1e-6)
    assert not np.allclose(steering[0], steering[1])  # two seeds, two models


def _frame(path):
    from data_tools import read_frame

    return read_frame(path)


def test_the_summary_reports_the_worst_log_and_seed(report):
    _, result = report
    runs = result["runs"]
    summary = result["logs"]["sim:keyboard@10"]
    autonomy = [r["replay"]["autonomy"] for r in runs]
    assert summary["autonomy"] == {"mean": pytest.approx(np.mean(autonomy)), "worst": min(autonomy)}
    assert summary["pearson"]["worst"] == min(r["offline"]["pearson"] for r in runs)
    assert summary["rmse_vs_mean"]["worst"] == max(r["offline"]["rmse_vs_mean"] for r in runs)
    assert summary["shift_gain"]["worst"] == min(r["replay"]["shift_gain"] for r in runs)
    assert summary["late_autonomy"]["worst"] == min(r["replay"]["late_autonomy"] for r in runs)
    assert result["all"]["autonomy"] == summary["autonomy"] and result["worst_log"] == "sim:keyboard@10"
    labels = summary["labels"]
    assert labels["fps"] == pytest.approx(10.0, rel=1e-2) and labels["keyboard_like"]
    assert labels["zero_share"] > 0.2 and labels["distinct_values"] < 30
    assert summary["interventions_by_bend"] == {
        bend: sum(r["replay"]["interventions_by_bend"][bend] for r in runs) for bend in ("left", "straight", "right")}
    text = format_recipe_report(result)
    assert "epochs=1, crop=[56, 24], epoch_samples=64" in text and "all (worst log and seed)" in text and "diagnosis" in text
    assert f"{summary['shift_gain']['mean']:.2f}" in text and "shift gain" in text
    assert f"{summary['late_autonomy']['worst']:.1f}" in text and "0.1 s late" in text


def test_bad_requests_are_named_before_any_training(tmp_path, capsys):
    from e2e_drive.cli import main

    with pytest.raises(ValueError, match="--sim wheelie@10"):
        parse_sim("wheelie@10")
    with pytest.raises(ValueError, match=r"--sim keyboard@fast: expected DRIVER\[@FPS\]"):
        parse_sim("keyboard@fast")
    assert main(["bench", "recipe"]) == 2
    assert "LOG: give at least one log" in capsys.readouterr().err
    assert main(["bench", "recipe", "--sim", "keyboard@500"]) == 2
    assert "frames per second must be in [1, 60]" in capsys.readouterr().err
    assert main(["bench", "recipe", str(tmp_path / "missing")]) == 2
    assert not list(tmp_path.iterdir())


def test_the_held_out_part_is_a_share_of_driven_time_not_of_rows():
    """A log that ends parked (as real logs do) is scored on 20% of its driving, not on 20% of rows that are
    mostly standing; the oracle is the replay's own clock of the driven seconds."""
    from data_tools import DrivingLog
    from e2e_drive.bench.recipe import held_out_rows
    from e2e_drive.replay import replay

    rate, driving, parked = 10.0, 300, 200
    speed = np.r_[np.full(driving, 8.0), np.zeros(parked)]  # mph, as the Udacity simulator writes it
    steering = 0.2 * np.sin(np.arange(driving + parked) / 15.0)
    n = driving + parked
    log = DrivingLog.from_columns(center=[f"c{i}.jpg" for i in range(n)], steering=steering, source="log.csv",
                                  row=np.arange(1, n + 1), speed=speed, timestamp=np.arange(n) / rate)
    held = held_out_rows(log, 0.2, min_speed=0.5)
    assert held[-parked:].all() and not held[:-parked - 60].any()  # 60 driven rows (6 s of 30 s) join the parked ones
    whole = replay(log, "recorded").total.elapsed_seconds
    scored = replay(log[held], "recorded").total.elapsed_seconds
    assert scored == pytest.approx(0.2 * whole, abs=1.5 / rate)
    rows_split = log.split(0.2)[1]
    assert len(rows_split) == 100 and rows_split.speed.max() == 0  # what the row split would have scored: nothing
    # With every row moving at one frame rate it is the row split.
    moving = DrivingLog.from_columns(center=log.images["center"], steering=steering, source="log.csv",
                                     row=np.arange(1, n + 1), speed=np.full(n, 8.0), timestamp=np.arange(n) / rate)
    assert np.array_equal(held_out_rows(moving, 0.2, 0.5), moving.validation_rows(0.2))
