"""The training recipe: keyboard-label detection and smoothing in seconds, the side-camera correction from
the car's geometry, and model selection by replay autonomy."""

from __future__ import annotations

import csv
import functools
import json
import logging
import math

import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from data_tools import DrivingLog
from data_tools.augment import ChooseCamera, Sample, ViewpointShift, pursuit_correction, side_camera_correction
from data_tools.smoothing import (is_keyboard_steering, keyboard_smoothing, smooth_steering_seconds,
                                  time_gaussian_smooth)
from e2e_drive.replay import CameraWarps, get_profile
from e2e_drive.sim import Camera, CarParams, CameraRig, make_track, record
from e2e_drive.closed_loop import AUTONOMY
from e2e_drive.recipe import pursuit_speed, recipe_augmentation
from e2e_drive.train import best_epoch, train
from e2e_drive.train_config import TrainConfig, TrainConfigError
from tests.builders import config_of_version, synthetic_log


def series_log(values, times=None, speed=None) -> DrivingLog:
    n = len(values)
    return DrivingLog.from_columns(center=[f"/x/{i}.jpg" for i in range(n)], steering=values, source="s.csv",
                                   row=range(1, n + 1), timestamp=times, speed=speed)


def keyboard_series(n: int = 400, seed: int = 0) -> np.ndarray:
    """Arrow-key steering: exact zeros, with short ramps toward full lock while a key is held."""
    rng = np.random.default_rng(seed)
    values = np.zeros(n)
    for start in rng.choice(n - 5, n // 15, replace=False):
        values[start : start + 3] = rng.choice([-1, 1]) * np.array([0.3, 0.6, 1.0])
    return values


# ---------------------------------------------------------------------- labels


def test_keyboard_labels_are_detected_and_analogue_ones_are_not():
    assert is_keyboard_steering(series_log(keyboard_series()))
    assert not is_keyboard_steering(series_log(0.3 * np.sin(np.arange(400) / 10.0)))


def test_standing_frames_do_not_count_as_keyboard_zeros():
    steering = np.concatenate([np.zeros(300), 0.2 + 0.1 * np.sin(np.arange(100))])  # parked, then driving
    speed = np.concatenate([np.zeros(300), np.full(100, 20.0)])
    assert not is_keyboard_steering(series_log(steering, speed=speed))
    assert is_keyboard_steering(series_log(steering))  # without speed every frame counts


def test_time_smoothing_on_a_regular_clock_is_the_frame_gaussian():
    values = keyboard_series()
    dt, sigma = 0.125, 0.5  # exact in binary: both cut the kernel at 16 frames
    smoothed = time_gaussian_smooth(values, np.arange(len(values)) * dt, sigma)
    oracle = gaussian_filter1d(values, sigma / dt, mode="constant", truncate=4.0)
    np.testing.assert_allclose(smoothed[20:-20], oracle[20:-20], atol=1e-9)


def test_time_smoothing_does_not_reach_across_a_pause():
    times = np.concatenate([np.arange(20) * 0.1, 60.0 + np.arange(20) * 0.1])  # a minute's pause
    values = np.concatenate([np.zeros(20), np.ones(20)])
    smoothed = time_gaussian_smooth(values, times, 0.4)
    np.testing.assert_allclose(smoothed, values, atol=1e-12)


def test_keyboard_smoothing_smooths_keyboard_logs_only(caplog):
    times = np.arange(400) * 0.1
    keys = series_log(keyboard_series(), times)
    smoothed = keyboard_smoothing(keys, 0.4).steering
    np.testing.assert_allclose(smoothed, time_gaussian_smooth(keys.steering, times, 0.4), atol=1e-6)
    analogue = series_log(0.3 * np.sin(np.arange(400) / 10.0), times)
    np.testing.assert_array_equal(keyboard_smoothing(analogue, 0.4).steering, analogue.steering)
    caplog.set_level(logging.WARNING, logger="data_tools.smoothing")
    unstamped = series_log(keyboard_series())
    np.testing.assert_array_equal(smooth_steering_seconds(unstamped, 0.4).steering, unstamped.steering)
    assert "no time stamps" in caplog.text and "s.csv" in caplog.text


# ---------------------------------------------------------------------- geometry


def test_side_correction_is_pure_pursuit_back_to_the_path():
    wheelbase, max_deg, d, speed = 2.5, 25.0, 1.1, 8.0
    lookahead = 4.0 + 0.5 * speed
    # Pure pursuit on a straight road from d metres off it: goal at (lookahead, d) in the car's frame.
    alpha = math.atan2(d, lookahead)
    wheel = math.atan(2 * wheelbase * math.sin(alpha) / math.hypot(lookahead, d))
    assert side_camera_correction(d, speed, wheelbase, max_deg) == pytest.approx(wheel / math.radians(max_deg))
    # Small offsets: 2 W d / L^2 radians, the textbook curvature of pure pursuit.
    small = side_camera_correction(0.01, speed, wheelbase, max_deg)
    assert small == pytest.approx(2 * wheelbase * 0.01 / lookahead**2 / math.radians(max_deg), rel=1e-3)
    assert side_camera_correction(d, 30.0, wheelbase, max_deg) < side_camera_correction(d, 5.0, wheelbase, max_deg)


def test_pursuit_speed_is_the_median_moving_speed_in_metres_per_second():
    profile = get_profile("udacity")  # speeds in mph: 1 mph = 0.44704 m/s
    speeds = [0.0, 0.5, 10.0, 20.0, 30.0, float("nan")]  # standing and missing rows do not count
    assert pursuit_speed(profile, speeds) == pytest.approx(20.0 * 0.44704)
    assert pursuit_speed(profile, speeds, 3.0) == 3.0  # the --speed flag wins
    assert pursuit_speed(profile, [0.0, float("nan")]) == profile.car.speed  # no moving rows: nominal


def test_pursuit_correction_aims_back_at_the_path_for_offsets_and_heading_errors():
    wheelbase, max_deg, speed = 2.5, 25.0, 8.0
    lookahead = 4.0 + 0.5 * speed
    assert pursuit_correction(0.0, 0.0, speed, wheelbase, max_deg) == 0.0
    # Turned psi left on the path: the aim point lies psi to the right, so pure pursuit steers right (+).
    psi = 0.05
    expected = math.atan(2 * wheelbase * math.sin(psi) / lookahead) / math.radians(max_deg)
    assert pursuit_correction(0.0, psi, speed, wheelbase, max_deg) == pytest.approx(expected)
    assert pursuit_correction(0.0, -psi, speed, wheelbase, max_deg) == pytest.approx(-expected)
    # Right of the path: the mirror image of the side camera's correction.
    assert pursuit_correction(-1.1, 0.0, speed, wheelbase, max_deg) == pytest.approx(
        -side_camera_correction(1.1, speed, wheelbase, max_deg))
    # Left of the path but already turned back toward it by exactly the aim point's bearing: no correction.
    bearing = math.atan2(1.0, lookahead)
    assert abs(pursuit_correction(1.0, -bearing, speed, wheelbase, max_deg)) < 1e-12
    assert pursuit_correction(0.0, 1.2, speed, wheelbase, max_deg) == 1.0  # 30 degrees of wheel: full lock


@pytest.mark.parametrize("camera", ["center", "left"])
def test_viewpoint_shift_shows_what_the_moved_camera_sees_and_steers_back(camera):
    track = make_track(3)
    render = Camera(track)
    rig = render.rig
    i = 40
    x, y, heading = track.centre[i][0], track.centre[i][1], track.heading[i]
    frame = render.render(x, y, heading, camera)
    correction = lambda lateral, turn: pursuit_correction(lateral, turn, 10.0, 2.5, 25.0)  # noqa: E731
    offsets = {"left": rig.side_offset, "right": -rig.side_offset}
    shift = ViewpointShift(CameraWarps(rig), correction, max_lateral=0.9, max_heading=0.06, camera_offsets=offsets,
                           p=1.0)
    rng = np.random.default_rng(5)
    rng_copy = np.random.default_rng(5)
    rng_copy.random()  # the probability coin comes first, then the parameters
    params = shift.get_params(rng_copy, frame.shape)
    out = shift(Sample(frame, 0.1, camera=camera), rng)
    assert out.applied == ("ViewpointShift",)
    lateral, turn = params["lateral"], params["heading"]
    assert abs(lateral) > 0.3  # a real move for this seed
    # Oracle: the simulator renders the same camera on the moved and turned car.
    left = np.array([-np.sin(heading), np.cos(heading)])
    truth = render.render(*(np.array([x, y]) + lateral * left), heading + turn, camera)
    rows = slice(rig.ground_start + 32, rig.size[0] - rig.bonnet_rows - 8)
    middle = slice(60, 260)
    error = np.mean(np.abs(out.image[rows, middle].astype(int) - truth[rows, middle]))
    unmoved = np.mean(np.abs(frame[rows, middle].astype(int) - truth[rows, middle]))
    assert error < 4.0 and error < 0.3 * unmoved, (error, unmoved)
    base = offsets.get(camera, 0.0)
    assert out.steering == pytest.approx(0.1 + correction(base + lateral, turn) - correction(base, 0.0))
    # A car moved left (or turned left) is steered right, and the reverse.
    assert np.sign(out.steering - 0.1) == np.sign(correction(base + lateral, turn) - correction(base, 0.0))


def test_viewpoint_shift_is_deterministic_and_survives_pickling():
    import pickle

    rig = CameraRig()
    frame = Camera(make_track(1)).render(*make_track(1).centre[5], make_track(1).heading[5])
    shift = ViewpointShift(CameraWarps(rig), functools.partial(pursuit_correction, speed=8.0, wheelbase=2.5,
                                                               max_steer_deg=25.0), p=1.0)
    copy = pickle.loads(pickle.dumps(shift))  # worker processes receive the chain pickled
    a = shift(Sample(frame, 0.0), np.random.default_rng(3))
    b = copy(Sample(frame, 0.0), np.random.default_rng(3))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.steering == b.steering
    with pytest.raises(ValueError, match="max_lateral"):
        ViewpointShift(CameraWarps(rig), pursuit_correction, max_lateral=-1.0)


@pytest.mark.parametrize("size, crop", [((160, 320), None), ((120, 160), None), ((160, 320), (30, 10))])
def test_the_recipe_warps_only_the_rows_the_model_sees(size, crop):
    from data_tools.preprocess import default_crop
    from e2e_drive.recipe import row_margin, seen_rows

    rig = CameraRig(size=size)
    track = make_track(2)
    frames = [Camera(track, rig).render(*track.centre[i], track.heading[i], camera)
              for i, camera in ((10, "center"), (30, "left"), (50, "right"))]
    log = DrivingLog.from_columns(center=["c.jpg"] * 3, left=["l.jpg"] * 3, right=["r.jpg"] * 3,
                                  steering=np.zeros(3), speed=np.full(3, 20.0), source="log.csv", row=np.arange(1, 4))
    config = TrainConfig(car="udacity", crop=crop)
    chain = recipe_augmentation(config, log, camera=rig)
    shift = next(t for t in chain.transforms if isinstance(t, ViewpointShift))
    assert shift.warp.seen_rows is not None and row_margin(chain) == 10 + 5  # Translate max_y, blur's 3 sigma
    whole = recipe_augmentation(config, log, camera=rig)
    next(t for t in whole.transforms if isinstance(t, ViewpointShift)).warp = CameraWarps(rig)
    top, bottom = default_crop(size[0]) if crop is None else crop
    first, end = seen_rows(size[0], crop, row_margin(chain))
    assert first == max(0, top - 15) and end == min(size[0], size[0] - bottom + 15) and end - first < size[0]
    shifted = 0
    for seed in range(40):
        frame, camera = frames[seed % 3], ("center", "left", "right")[seed % 3]
        fast = chain(Sample(frame, 0.0, camera=camera), np.random.default_rng(seed))
        slow = whole(Sample(frame, 0.0, camera=camera), np.random.default_rng(seed))
        assert fast.steering == slow.steering and fast.applied == slow.applied
        # What the model sees, after every later transform, is the whole-frame warp's, pixel for pixel.
        np.testing.assert_array_equal(fast.image[top:size[0] - bottom], slow.image[top:size[0] - bottom])
        shifted += "ViewpointShift" in fast.applied
    assert shifted >= 10


@pytest.fixture(scope="module")
def sim_recording(tmp_path_factory):
    """12 seconds of the embedded simulator's expert (time stamps, speed, three cameras)."""
    out = tmp_path_factory.mktemp("sim_recording")
    record(7, out, laps=0.35, progress=False)
    return out


def test_training_derives_the_side_correction_from_the_car_and_camera(sim_recording):
    from data_tools import load_log

    chain = recipe_augmentation(TrainConfig(car="sim", side_correction=None), load_log(sim_recording))
    choose = next(t for t in chain.transforms if isinstance(t, ChooseCamera))
    car, rig = CarParams(), CameraRig()  # what record drives with: the sim profile's car and camera
    assert choose.correction == pytest.approx(side_camera_correction(rig.side_offset, car.speed, car.wheelbase,
                                                                     car.max_steer_deg), rel=1e-3)
    fixed = recipe_augmentation(TrainConfig(car="sim", side_correction=0.25), load_log(sim_recording))
    assert next(t for t in fixed.transforms if isinstance(t, ChooseCamera)).correction == 0.25


def test_viewpoint_shift_joins_the_chain_with_the_cars_camera_and_pursuit(sim_recording):
    from data_tools import load_log

    data = load_log(sim_recording)
    off = recipe_augmentation(TrainConfig(car="sim", viewpoint_shift=0.0), data)
    assert not any(isinstance(t, ViewpointShift) for t in off.transforms)
    by_default = recipe_augmentation(TrainConfig(car="sim"), data).transforms[1]
    assert by_default.max_lateral == pytest.approx(0.5 * get_profile("sim").intervention_offset)
    chain = recipe_augmentation(TrainConfig(car="sim", viewpoint_shift=1.1), data)
    assert isinstance(chain.transforms[0], ChooseCamera) and isinstance(chain.transforms[1], ViewpointShift)
    shift = chain.transforms[1]
    car, rig = CarParams(), CameraRig()
    assert shift.max_lateral == 1.1 and shift.warp.rig == rig
    assert shift.camera_offsets == {"left": rig.side_offset, "right": -rig.side_offset}
    # Labelled with the sim car's pure pursuit at the recording's speed (the expert's cruising speed).
    assert shift.correction(0.7, 0.02) == pytest.approx(pursuit_correction(0.7, 0.02, car.speed, car.wheelbase,
                                                                           car.max_steer_deg), rel=1e-3)


def test_the_car_profile_comes_from_the_data(sim_recording, tmp_path, tub, udacity_log, caplog):
    from data_tools import load_log
    from e2e_drive.replay import car_for_log

    tub_folder = tub(tmp_path / "tub", records=11, per_catalog=5, deleted=())
    plain = udacity_log(tmp_path / "log")
    assert car_for_log(load_log(sim_recording)) == "sim"
    assert car_for_log(load_log(tub_folder)) == "donkey"
    assert car_for_log(load_log(plain)) == "udacity"
    caplog.set_level(logging.WARNING, logger="e2e_drive.replay.profiles")
    assert car_for_log(load_log([str(tub_folder), str(plain)])) == "udacity"
    assert "mixes donkey and udacity recordings" in caplog.text
    # A donkeycar tub trains with the donkey car's geometry: viewpoint shifts of half its 0.3 m threshold,
    # not the Udacity car's 1.35 m (wider than a donkeycar lane); the resolved car is saved with the run.
    donkey = get_profile("donkey")
    chain = recipe_augmentation(TrainConfig(), load_log(tub_folder))
    shift = next(t for t in chain.transforms if isinstance(t, ViewpointShift))
    assert shift.max_lateral == pytest.approx(0.5 * donkey.intervention_offset) and shift.max_lateral < 0.2
    train([str(tub_folder)], tmp_path / "run", epochs=1, batch_size=4, verbose=0, cache="memory")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["car"] == "donkey"
    train([str(tub_folder)], tmp_path / "run", epochs=2, verbose=0, resume=True)  # saved car kept


def test_a_camera_calibration_drives_the_shifts_the_correction_and_the_closed_loop_check(sim_recording, tmp_path):
    import dataclasses
    import shutil

    from data_tools import DataError, load_log
    from deploy import load_predictor
    from e2e_drive.replay import load_camera, replay, rig_to_json

    folder = tmp_path / "log"
    shutil.copytree(sim_recording, folder)
    (folder / "recording.json").unlink()  # a plain three-camera log: the check replays it
    log = load_log(folder)
    # A calibration unlike the sim profile's camera (side cameras 0.8 m off centre, another pitch).
    rig = dataclasses.replace(CameraRig(), side_offset=0.8, pitch_deg=9.0)
    camera = tmp_path / "camera.json"
    camera.write_text(json.dumps({"camera": rig_to_json(rig)}))
    config = TrainConfig(car="sim", camera=str(camera), side_correction=None)
    chain = recipe_augmentation(config, log)
    shift = next(t for t in chain.transforms if isinstance(t, ViewpointShift))
    choose = next(t for t in chain.transforms if isinstance(t, ChooseCamera))
    assert shift.warp.rig == load_camera(camera) and shift.camera_offsets == {"left": 0.8, "right": -0.8}
    car = CarParams()
    speed = float(np.median(log.speed[log.speed > 1])) * 0.44704
    assert choose.correction == pytest.approx(side_camera_correction(0.8, speed, car.wheelbase, car.max_steer_deg),
                                              rel=1e-2)
    result = train([str(folder)], tmp_path / "run", epochs=1, batch_size=16, car="sim", camera=str(camera),
                   verbose=0, cache="memory")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["camera"] == str(camera)
    oracle = replay(folder, load_predictor(result.best_model_path), start=0.8, profile="sim", camera=camera).total
    assert result.closed_loop["frames"] == oracle.frames
    assert result.closed_loop["mean_abs_offset"] == pytest.approx(oracle.mean_abs_offset, abs=1e-3)
    (tmp_path / "sub").mkdir()
    same = train([str(folder)], tmp_path / "run", camera=str(tmp_path / "sub" / ".." / "camera.json"), resume=True,
                 verbose=0)  # the same file by another path resumes
    assert same.closed_loop["frames"] == oracle.frames
    with pytest.raises(Exception, match="--camera: saved .*camera.json, given .*other.json"):
        train([str(folder)], tmp_path / "run", epochs=2, camera=str(tmp_path / "other.json"), resume=True,
              verbose=0)
    # A calibration of another frame size is refused before any training, naming the file.
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"camera": rig_to_json(dataclasses.replace(rig, size=(120, 160)))}))
    with pytest.raises(DataError, match=r"small\.json: the camera calibration is for 160x120 frames"):
        train([str(folder)], tmp_path / "small_run", epochs=1, camera=str(small), car="sim", verbose=0)
    assert not (tmp_path / "small_run").exists()


def test_small_logs_get_epochs_of_min_epoch_samples(monkeypatch, tmp_path):
    import e2e_drive.recipe as recipe_module
    from e2e_drive.models import load_model
    from e2e_drive.recipe import epoch_repeat

    monkeypatch.setattr(recipe_module, "MIN_EPOCH_SAMPLES", 12000)  # the recipe's value (conftest sets 0)
    assert epoch_repeat(TrainConfig(), 1500) == 8 and epoch_repeat(TrainConfig(), 30000) == 1
    assert epoch_repeat(TrainConfig(), 2000) == 6 and epoch_repeat(TrainConfig(), 100) == 8  # at most 8 passes
    assert epoch_repeat(TrainConfig(epoch_samples=12000), 100) == 120  # asked for: not capped
    assert epoch_repeat(TrainConfig(epoch_samples=0), 1500) == 1
    assert epoch_repeat(TrainConfig(epoch_samples=100), 32) == 4
    log = synthetic_log(tmp_path / "log", n=40)  # 32 training rows
    train(log, tmp_path / "run", epochs=2, batch_size=8, epoch_samples=100, verbose=0, cache="memory",
          early_stopping=0)
    # 4 passes of 32 rows = 128 samples = 16 steps of 8, per epoch.
    assert int(load_model(tmp_path / "run" / "last.keras", compile=True).optimizer.iterations.numpy()) == 32
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["epoch_samples"] == 100 and saved["viewpoint_shift"] is None and saved["select_by"] == "last"


def test_cli_passes_the_recipe_flags():
    from e2e_drive.cli import build_parser
    from e2e_drive.cli.train import train_options

    args = build_parser().parse_args(["train", "d", "--out", "r", "--viewpoint-shift", "1.35", "--epoch-samples",
                                      "0"])
    options = train_options(args)
    assert options["viewpoint_shift"] == 1.35 and options["epoch_samples"] == 0
    assert "epoch_samples" not in train_options(build_parser().parse_args(["train", "d", "--out", "r"]))


# ---------------------------------------------------------------------- options and selection


def test_recipe_options_are_validated_with_their_flags():
    with pytest.raises(TrainConfigError, match="--smooth-seconds and --smooth-steering"):
        TrainConfig(smooth_seconds=0.4, smooth_steering=3.0)
    with pytest.raises(TrainConfigError, match="--select-by"):
        TrainConfig(select_by="accuracy")
    with pytest.raises(TrainConfigError, match="--car"):
        TrainConfig(car="tractor")
    with pytest.raises(TrainConfigError, match="--side-correction"):
        TrainConfig(side_correction=-0.1)
    config = TrainConfig(smooth_seconds=0.4, select_by="autonomy", car="sim", side_correction=0.15)
    assert TrainConfig.from_json(config.to_json()) == config
    older = config_of_version(TrainConfig(), 2)
    resumed = TrainConfig.from_dict(older)  # a run saved before these options resumes as it was trained
    assert (resumed.smooth_seconds, resumed.side_correction) == (0.0, 0.2)
    assert (resumed.viewpoint_shift, resumed.epoch_samples, resumed.lr_schedule) == (0.0, 0, "constant")
    version_3 = config_of_version(config, 3)
    resumed = TrainConfig.from_dict(version_3)
    assert (resumed.smooth_seconds, resumed.select_by) == (0.4, "autonomy")  # its own recipe options are kept
    assert (resumed.viewpoint_shift, resumed.epoch_samples) == (0.0, 0)
    with pytest.raises(TrainConfigError, match="version 3 has no field.*viewpoint_shift"):
        TrainConfig.from_dict({**version_3, "viewpoint_shift": 1.0})
    with pytest.raises(TrainConfigError, match="version 4 has no field.*camera"):
        TrainConfig.from_dict({**version_3, "version": 4, "camera": "c.json"})
    version_5 = config_of_version(config, 5)
    assert TrainConfig.from_dict(version_5).lr_schedule == "constant"  # a run from before the schedule
    with pytest.raises(TrainConfigError, match="--lr-schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(TrainConfigError, match="--speed: expected a finite number > 0 and <= 30, got 0"):
        TrainConfig(speed=0)
    with pytest.raises(TrainConfigError, match="--speed: expected a finite number > 0 and <= 30, got 31"):
        TrainConfig(speed=31)  # a typo, not a car: the closed-loop check would drive off at once
    assert TrainConfig(speed=30).speed == 30.0
    with pytest.raises(TrainConfigError, match="--camera"):
        TrainConfig(camera="")
    with pytest.raises(TrainConfigError, match="--viewpoint-shift"):
        TrainConfig(viewpoint_shift=-1.0)
    with pytest.raises(TrainConfigError, match="--epoch-samples"):
        TrainConfig(epoch_samples=2.5)


def test_select_by_last_keeps_the_last_epoch_and_never_stops_early(tmp_path):
    from e2e_drive.models import load_model
    from e2e_drive.train import LAST_EPOCH

    log = synthetic_log(tmp_path / "log", n=40)
    # lr 1e-30: the val loss never improves, which would stop a val_loss run after epoch 2 with patience 1.
    result = train(log, tmp_path / "run", epochs=3, batch_size=8, learning_rate=1e-30, early_stopping=1,
                   augment=False, verbose=0, cache="memory")
    assert result.epochs_run == 3 and not result.stopped_early
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["monitor"] == LAST_EPOCH and state["best_epoch"] == 3
    best, last = load_model(tmp_path / "run" / "best.keras"), load_model(tmp_path / "run" / "last.keras")
    for a, b in zip(best.get_weights(), last.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert result.val_rmse == pytest.approx(math.sqrt(result.history["val_loss"][-1]))
    assert best_epoch({"loss": [0.3, 0.1, 0.2]}, LAST_EPOCH) == 2


def test_best_epoch_by_autonomy_breaks_ties_by_validation_loss():
    history = {AUTONOMY: [80.0, 100.0, 100.0, 90.0], "val_loss": [0.01, 0.30, 0.20, 0.05]}
    assert best_epoch(history, AUTONOMY) == 2
    assert best_epoch(history, "val_loss") == 0


@pytest.fixture(scope="module")
def autonomy_run(sim_recording, tmp_path_factory):
    """Two epochs on the recording, selected by the simulator's closed loop: one training for three tests (per
    xdist worker; pytest-xdist 3.8's --dist loadgroup cannot group tests under pytest 9, which ignores its
    renamed node ids)."""
    out = tmp_path_factory.mktemp("autonomy_run") / "run"
    result = train([str(sim_recording)], out, epochs=2, batch_size=16, select_by="autonomy", car="sim", verbose=0,
                   cache="memory", early_stopping=0)
    return result, out


def test_select_by_autonomy_replays_the_validation_span_each_epoch(autonomy_run):
    result, out = autonomy_run
    assert len(result.history[AUTONOMY]) == 2 and all(a <= 100.0 for a in result.history[AUTONOMY])
    state = json.loads((out / "state.json").read_text())
    assert state["monitor"] == AUTONOMY
    assert state["best_epoch"] == best_epoch(result.history, AUTONOMY) + 1
    assert result.val_rmse == pytest.approx(math.sqrt(result.history["val_loss"][state["best_epoch"] - 1]))


def test_select_by_autonomy_lets_the_simulator_drive_its_own_recordings(sim_recording, autonomy_run):
    from e2e_drive.models import load_model, steering_function
    from e2e_drive.sim import drive, read_recording

    recording = read_recording(sim_recording)
    assert recording is not None and recording.track == 7 and recording.car == CarParams()
    result, out = autonomy_run
    # The last epoch's figure is the simulator's own closed loop of last.keras on the recorded track.
    last = load_model(out / "last.keras")
    oracle = drive(steering_function(last), [7], laps=1.0, params=recording.car, rig=recording.rig,
                   fps=recording.fps, progress=False)[0]
    assert result.history[AUTONOMY][-1] == pytest.approx(oracle.autonomy)
    assert result.history["val_interventions"][-1] == oracle.interventions


def test_a_simulator_recording_is_checked_by_the_simulator(sim_recording, autonomy_run, tmp_path):
    from e2e_drive.models import load_model, steering_function
    from e2e_drive.sim import drive, read_recording

    recording = read_recording(sim_recording)
    result, _ = autonomy_run  # the check at the end drives best.keras, whichever way it was selected
    oracle = drive(steering_function(load_model(result.best_model_path)), [7], laps=1.0, params=recording.car,
                   rig=recording.rig, fps=recording.fps, progress=False)[0]
    check = result.closed_loop
    assert check["by"] == "simulator" and check["tracks"] == [7]
    assert check["autonomy"] == pytest.approx(oracle.autonomy) and check["interventions"] == oracle.interventions
    assert json.loads(json.dumps(result.to_dict()))["closed_loop"] == check
    assert cv2.imread(check["plot"]) is not None  # the track map with the driven path
    # A tub written by `sim record --format tub` (no speed column: replay could not drive it) is checked too.
    record(7, tmp_path / "tub", laps=0.2, progress=False, format="tub")
    tub_check = train([str(tmp_path / "tub")], tmp_path / "tub_run", epochs=1, batch_size=16, verbose=0,
                      cache="memory").closed_loop
    assert tub_check["by"] == "simulator" and tub_check["tracks"] == [7]


def test_training_ends_with_best_keras_driven_through_the_validation_span(sim_recording, tmp_path, capsys):
    import shutil

    from data_tools import load_log
    from deploy import load_predictor
    from e2e_drive.cli import main
    from e2e_drive.replay import reconstruct, replay

    from data_tools.smoothing import is_keyboard_steering

    # The same drive as a plain log (no recording.json): the check replays the recorded frames. Its labels are
    # made keyboard-like (two rows in three exactly 0, the third tripled), so that training smooths them: the
    # check must still rebuild the driven path from the recorded labels, as `e2e-drive replay` does.
    folder = tmp_path / "log"
    shutil.copytree(sim_recording, folder)
    (folder / "recording.json").unlink()
    with open(folder / "driving_log.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    for i, row in enumerate(rows):
        row[3] = repr(float(np.clip(3 * float(row[3]), -1, 1)) if i % 3 == 0 else 0.0)
    with open(folder / "driving_log.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    log = load_log(folder)
    assert is_keyboard_steering(log)
    assert round(0.2 * len(log)) == len(log) - math.floor(0.8 * len(log))  # the split is replay's --start 0.8
    result = train([str(folder)], tmp_path / "run", epochs=1, batch_size=16, car="sim", verbose=0, cache="memory")
    check = result.closed_loop
    # The oracle: what `e2e-drive replay best.keras LOG --start 0.8` scores, through another predictor.
    oracle = replay(folder, load_predictor(result.best_model_path), start=0.8, profile="sim").total
    assert check["by"] == "replay" and check["frames"] == oracle.frames
    assert check["interventions"] == oracle.interventions and check["autonomy"] == pytest.approx(oracle.autonomy)
    # The two predictors run the model in different graphs: their float rounding differs by ~1e-7, which the
    # closed loop carries into the path (0.7% apart with one TensorFlow thread). Same drive, not same bits.
    assert check["mean_abs_offset"] == pytest.approx(oracle.mean_abs_offset, rel=0.02)
    assert check["elapsed_seconds"] == pytest.approx(oracle.elapsed_seconds)
    assert json.loads((tmp_path / "run" / "closed_loop.json").read_text()) == json.loads(json.dumps(check))
    # The run's time split holds the check apart from validation.
    split = result.time_split["seconds"]
    assert split["closed_loop"] > 0 and split["validation"] > 0
    assert split["closed_loop"] + split["validation"] < result.time_split["total_seconds"]
    # Where it strayed, drawn beside the figures (a PNG that opens).
    assert check["plot"] == str(tmp_path / "run" / "closed_loop.png")
    assert cv2.imread(check["plot"]) is not None
    # The CLI prints it after the run and puts it into --json.
    code = main(["train", str(folder), "--out", str(tmp_path / "cli"), "--epochs", "1", "--batch-size", "16",
                 "--car", "sim", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "closed loop on the validation span (replay): " in out
    # A span of seconds: the CLI says how coarse the figure is (six seconds per intervention over the span).
    elapsed = json.loads((tmp_path / "cli" / "closed_loop.json").read_text())["elapsed_seconds"]
    assert f"a short span: one intervention costs {600 / elapsed:.0f} points of autonomy here" in out
    # And how strictly the span judges: the recorded steering 0.1 s late, blind, on the replayed rows.
    held = load_log(folder)[math.floor(0.8 * len(load_log(folder))):]
    late = replay(held, "recorded", profile="sim", trajectories=[reconstruct(held, get_profile("sim")).late(0.1)])
    assert check["late_autonomy"] == pytest.approx(late.total.autonomy) and check["strict"] == (
        late.total.autonomy < 50.0)
    assert ("a strict span" in out) == json.loads((tmp_path / "cli" / "closed_loop.json").read_text())["strict"]
    cli_split = json.loads((tmp_path / "cli" / "time_split.json").read_text())
    assert f"wall time {cli_split['total_seconds']:.1f} s: " in out and "closed loop " in out
    # Without a validation span there is nothing to drive.
    assert train([str(folder)], tmp_path / "none", epochs=1, batch_size=16, car="sim", verbose=0,
                 val_fraction=0.0).closed_loop is None


def test_a_tub_without_speed_is_checked_at_the_given_speed(tmp_path):
    from data_tools import read_frame
    from data_tools.preprocess import default_crop
    from deploy import load_predictor
    from e2e_drive.models import load_model
    from e2e_drive.replay import replay

    # A donkeycar tub with real time stamps and no speed column (not ours: no recording.json).
    tub = tmp_path / "tub"
    record(7, tub, laps=0.2, progress=False, format="tub")
    (tub / "recording.json").unlink()
    skipped = train([str(tub)], tmp_path / "plain", epochs=1, batch_size=16, verbose=0, cache="memory",
                    crop=(50, 20))
    assert "give one with --speed" in skipped.closed_loop["skipped"]
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["crop"] == [50, 20]  # --crop wins
    result = train([str(tub)], tmp_path / "run", epochs=1, batch_size=16, verbose=0, cache="memory", speed=2.5)
    # The donkey camera sees no bonnet: without --crop the sky is cut as always and the bottom rows stay.
    height = read_frame(next((tub / "images").iterdir())).shape[0]
    kept = [default_crop(height)[0], 0]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["crop"] == kept
    assert list(load_model(result.best_model_path).get_layer("preprocess").crop) == kept
    check = result.closed_loop
    # The oracle: `e2e-drive replay best.keras TUB --start 0.8 --speed 2.5` (the donkey profile, from the data).
    oracle = replay(tub, load_predictor(result.best_model_path), start=0.8, profile="donkey", speed=2.5).total
    assert check["by"] == "replay" and check["frames"] == oracle.frames
    assert check["interventions"] == oracle.interventions
    assert check["elapsed_seconds"] == pytest.approx(oracle.elapsed_seconds)
    # The two predictors run the model in different graphs: their float rounding differs by ~1e-7, which the
    # closed loop carries into the path (0.7% apart with one TensorFlow thread). Same drive, not same bits.
    assert check["mean_abs_offset"] == pytest.approx(oracle.mean_abs_offset, rel=0.02)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["speed"] == 2.5


def test_only_our_recordings_say_they_are_simulator_recordings(tmp_path, udacity_log):
    from e2e_drive.sim import read_recording

    assert read_recording(udacity_log(tmp_path / "log")) is None
    (tmp_path / "recording.json").write_text('{"kind": "something else", "track": 1}')
    assert read_recording(tmp_path) is None
    (tmp_path / "recording.json").write_text("{not json")
    assert read_recording(tmp_path) is None


def test_select_by_autonomy_falls_back_to_val_loss_without_time_stamps(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="e2e_drive.closed_loop")
    log = synthetic_log(tmp_path / "log", n=40)  # no time stamps, no speed: nothing to replay
    result = train(log, tmp_path / "run", epochs=1, batch_size=8, select_by="autonomy", verbose=0,
                   cache="memory")
    assert AUTONOMY not in result.history
    assert json.loads((tmp_path / "run" / "state.json").read_text())["monitor"] == "val_loss"
    assert "--select-by autonomy: cannot replay the validation rows" in caplog.text
    assert "no time stamp" in result.closed_loop["skipped"]  # and says why the run has no closed-loop check
    assert not (tmp_path / "run" / "closed_loop.json").exists()
