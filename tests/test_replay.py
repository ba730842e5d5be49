"""Closed-loop replay on recorded logs (e2e_drive.replay) against the embedded simulator as the oracle.

The simulator recording here is noise-free (pure pursuit on the centre line with a short look-ahead, no
drifts), written losslessly (PNG), so the true camera, the true poses and the true closed loop are known.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from data_tools import DataError, DrivingLog, load_log, read_frame, write_frame
from e2e_drive.replay import ViewWarp, calibrate, get_profile, load_camera, reconstruct, replay
from e2e_drive.sim import Camera, CameraRig, CarParams, CarState, drive, make_track, pure_pursuit, step
from e2e_drive.sim.record import MPH_PER_MPS

TRACK = 3
FPS = 10.0
SECONDS = 25.0


def record_noise_free(track, out: Path, seconds: float = SECONDS, rig: CameraRig = CameraRig()) -> np.ndarray:
    """Drive pure pursuit (3 m look-ahead: within 2 cm of the centre line) and write a Udacity log; true poses."""
    params = CarParams()
    camera = Camera(track, rig)
    (out / "IMG").mkdir(parents=True)
    state = CarState.at(*track.centre[0], track.heading[0], params.speed)
    rows, poses = [], []
    for i in range(int(round(seconds * FPS))):
        command = pure_pursuit(track, state, params, 0.0, lookahead=np.array([3.0]))
        stamp = (dt.datetime(2020, 1, 1) + dt.timedelta(seconds=i / FPS)).strftime("%Y_%m_%d_%H_%M_%S_%f")[:-3]
        paths = []
        for name in ("center", "left", "right"):
            path = out / "IMG" / f"{name}_{stamp}.png"
            write_frame(path, camera.render(state.x[0], state.y[0], state.heading[0], name))
            paths.append(str(path))
        rows.append(paths + [f"{command[0]:.6f}", "0.3", "0", f"{state.speed[0] * MPH_PER_MPS:.4f}"])
        poses.append((state.x[0], state.y[0], state.heading[0]))
        state = step(state, command, 1.0 / FPS, params)
    with open(out / "driving_log.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return np.array(poses)


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory):
    """(folder, track, true poses) of a 25 s noise-free recording on track 3 (it has several bends)."""
    track = make_track(TRACK)
    folder = tmp_path_factory.mktemp("sim_log")
    poses = record_noise_free(track, folder)
    return folder, track, poses


def road_follower(track, bias: float = 0.0, gain: float = 1.2):
    """A driver that sees only frames: steer toward the centroid of road-coloured pixels 3-5 m ahead."""
    road = np.asarray(track.theme.road, np.float32) * track.theme.brightness

    def predict(frames: np.ndarray) -> np.ndarray:
        band = frames[:, 85:115].astype(np.float32)
        counts = (np.linalg.norm(band - road, axis=-1) < 40).sum(axis=1)
        columns = np.arange(frames.shape[2])
        centre = (counts * columns).sum(axis=1) / np.maximum(counts.sum(axis=1), 1)
        middle = (frames.shape[2] - 1) / 2
        return np.clip(gain * (centre - middle) / middle + bias, -1.0, 1.0)

    return predict


# --- the recorded trajectory ----------------------------------------------------------------------------

def test_reconstructed_path_is_the_simulators_path(sim_log):
    folder, _, poses = sim_log
    path = reconstruct(load_log(folder), get_profile("sim"))
    x0, y0, h0 = poses[0]
    c, s = np.cos(-h0), np.sin(-h0)
    local_x = c * (poses[:, 0] - x0) - s * (poses[:, 1] - y0)
    local_y = s * (poses[:, 0] - x0) + c * (poses[:, 1] - y0)
    assert np.max(np.hypot(local_x - path.x, local_y - path.y)) < 0.01  # 25 s, 200 m: CSV rounding only
    assert np.max(np.abs(np.angle(np.exp(1j * (poses[:, 2] - h0 - path.heading))))) < 1e-3
    assert path.segments == 1 and np.allclose(path.speed, CarParams().speed, rtol=1e-4)


def test_time_gap_splits_the_log_and_standing_frames_are_not_timed(tmp_path):
    frame = np.zeros((16, 32, 3), np.uint8)
    times = [0.0, 0.1, 0.2, 0.3, 5.0, 5.1, 5.2, 5.3]
    speeds = [0.0, 0.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0]  # mph: standing at first
    for i in range(len(times)):
        write_frame(tmp_path / f"f{i}.png", frame)
    log = DrivingLog.from_columns(center=[str(tmp_path / f"f{i}.png") for i in range(8)], steering=[0.1] * 8,
                                  speed=speeds, timestamp=times, source=str(tmp_path / "log.csv"), row=range(8))
    path = reconstruct(log, get_profile("udacity"))
    assert path.segments == 2 and list(path.segment) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert path.dt[3] == 0.0 and not path.moving[0] and not path.moving[1] and path.moving[2]
    result = replay(log, "recorded").total
    assert result.elapsed_seconds == pytest.approx(0.1 + 0.3, abs=1e-6)  # rows 2->3, then 4->7 after the gap
    assert result.segments == 2 and result.standing_frames == 2


# --- replay: the log's own steering, a constant -----------------------------------------------------------

def test_recorded_steering_replays_with_zero_offset(sim_log):
    folder, _, _ = sim_log
    result = replay(folder, "recorded", profile="sim").total
    assert result.max_abs_offset < 1e-9
    assert result.autonomy == 100.0 and result.interventions == 0
    assert result.frames == int(SECONDS * FPS) - 1
    assert result.elapsed_seconds == pytest.approx(SECONDS - 1 / FPS, abs=1e-3)


def test_constant_zero_steering_intervenes_on_bends(sim_log):
    folder, track, _ = sim_log
    result = replay(folder, 0.0, profile="sim").total
    assert result.interventions >= 2 and result.autonomy < 60
    assert result.max_abs_offset > get_profile("sim").intervention_offset
    # A higher threshold: fewer interventions.
    assert replay(folder, 0.0, profile="sim", max_offset=6.0).total.interventions < result.interventions


def test_per_step_traces_say_when_and_where_the_car_strayed(sim_log):
    folder, _, _ = sim_log
    log = load_log(folder)
    path = reconstruct(log, get_profile("sim"))
    result = replay(folder, 0.0, profile="sim").total
    n = result.frames
    assert len(result.seconds) == len(result.recorded) == len(result.intervened) == len(result.positions) == n
    # An intervention is exactly a step that ended beyond the threshold, and counts once.
    threshold = get_profile("sim").intervention_offset
    assert np.array_equal(result.intervened, np.abs(result.offsets) > threshold)
    assert int(result.intervened.sum()) == result.interventions >= 2
    # Time runs on with each step, to the elapsed seconds; each step is on the row it drove from.
    assert np.all(np.diff(result.seconds) > 0) and result.seconds[-1] == pytest.approx(result.elapsed_seconds)
    assert np.array_equal(result.recorded, log.steering[result.rows])
    assert np.allclose(result.positions, np.stack([path.x[result.rows], path.y[result.rows]], axis=1))
    assert np.all(result.steering == 0.0)
    assert np.array_equal(result.segment_ids, path.segment[result.rows])


def test_plot_draws_each_log(sim_log, tmp_path):
    import cv2

    from e2e_drive.replay.plot import plot_replay

    folder, _, _ = sim_log
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    plot_replay(replay(folder, 0.0, profile="sim"), one)
    plot_replay(replay([folder, folder], 0.0, profile="sim", start=0.5), two, title="two logs")
    first, second = cv2.imread(str(one)), cv2.imread(str(two))
    assert first is not None and second is not None
    assert second.shape[0] > 1.6 * first.shape[0]  # a row per log
    assert first.std() > 10  # drawn, not blank
    assert not list(tmp_path.glob("*.tmp*"))


def test_plot_lays_segments_side_by_side():
    from e2e_drive.replay.plot import _side_by_side

    # Two segments, each rebuilt from the origin (a time gap between them).
    positions = np.array([[0.0, 0.0], [10.0, 1.0], [30.0, 2.0], [0.0, 0.0], [5.0, -3.0]])
    placed = _side_by_side(positions, np.array([0, 0, 0, 1, 1]), gap=20.0)
    assert np.array_equal(placed[:3], positions[:3])  # the first stays where it was
    assert np.allclose(placed[3:], [[50.0, 0.0], [55.0, -3.0]])  # the next starts 20 m right of it, same shape


def test_pieces_drive_together_and_cover_the_same_time(sim_log):
    folder, track, _ = sim_log
    whole = replay(folder, "recorded", profile="sim").total
    pieces = replay(folder, "recorded", profile="sim", piece_seconds=5.0).total
    assert pieces.segments == 5 and pieces.max_abs_offset < 1e-9
    assert pieces.frames == whole.frames and pieces.elapsed_seconds == pytest.approx(whole.elapsed_seconds)
    batches = []

    def driver(frames: np.ndarray) -> np.ndarray:
        batches.append(len(frames))
        return road_follower(track)(frames)

    replay(folder, driver, camera=CameraRig(), profile="sim", piece_seconds=5.0)
    assert max(batches) == 5


def test_start_end_score_only_the_span(sim_log):
    folder, _, _ = sim_log
    whole = replay(folder, "recorded", profile="sim").total
    half = replay(folder, "recorded", profile="sim", start=0.5).total
    assert half.frames == pytest.approx(whole.frames / 2, abs=2)
    assert half.elapsed_seconds == pytest.approx(whole.elapsed_seconds / 2, abs=0.2)


# --- the warp and the calibration against the simulator's true camera --------------------------------------

def test_warp_of_centre_frame_by_side_offset_is_the_rendered_side_frame(sim_log):
    folder, _, _ = sim_log
    log = load_log(folder)
    rig = CameraRig()
    warp = ViewWarp(rig)
    rows = slice(rig.ground_start + 3, rig.size[0] - rig.bonnet_rows - 8)  # road rows, above the bonnet
    columns = slice(60, 260)  # ground the centre camera saw too (the side views reach ~55 px beyond it)
    for row in (40, 120, 200):
        centre = read_frame(log.images["center"][row])
        for side in ("left", "right"):
            truth = read_frame(log.images[side][row])[rows, columns].astype(np.float64)
            warped = warp(centre, target=side)[rows, columns].astype(np.float64)
            unwarped = centre[rows, columns].astype(np.float64)
            assert np.mean(np.abs(warped - truth)) < 3.0  # grey levels: bilinear interpolation of texture detail
            assert np.corrcoef(warped.ravel(), truth.ravel())[0, 1] > 0.99
            assert np.corrcoef(unwarped.ravel(), truth.ravel())[0, 1] < 0.5


def test_warp_to_a_displaced_car_matches_the_render_there(sim_log):
    _, track, poses = sim_log
    camera = Camera(track)
    warp = ViewWarp(camera.rig)
    x, y, heading = poses[60]
    recorded = camera.render(x, y, heading)
    left = np.array([-np.sin(heading), np.cos(heading)])
    for lateral, error, forward in ((0.8, 0.0, 0.0), (-0.5, 0.03, 0.4)):
        ahead = forward * np.array([np.cos(heading), np.sin(heading)])
        truth = camera.render(*(np.array([x, y]) + lateral * left + ahead), heading + error)
        view = warp(recorded, lateral, error, forward=forward)
        # Near ground: the far rows alias in the renderer itself (no mipmaps), so a turned camera's
        # sub-pixel resampling differs there by up to ~20 grey levels in the truth too.
        rows = slice(camera.rig.ground_start + 32, camera.rig.size[0] - camera.rig.bonnet_rows - 8)
        middle = slice(60, 260)  # columns the recorded camera saw
        error = np.mean(np.abs(view[rows, middle].astype(int) - truth[rows, middle]))
        unwarped = np.mean(np.abs(recorded[rows, middle].astype(int) - truth[rows, middle]))
        assert error < 4.0 and error < 0.3 * unwarped, (error, unwarped)
        sky = slice(0, camera.rig.ground_start - 3)
        assert np.mean(np.abs(view[sky, middle].astype(int) - truth[sky, middle])) < 2.0


def test_calibration_recovers_the_simulator_camera(sim_log, tmp_path):
    folder, _, _ = sim_log
    result = calibrate(folder, profile="sim", frames=8)
    truth = CameraRig()
    assert result.camera.pitch_deg == pytest.approx(truth.pitch_deg, rel=0.03)
    assert result.camera.side_offset == pytest.approx(truth.side_offset, rel=0.03)
    assert result.camera.focal == pytest.approx(truth.focal, rel=0.03)  # from the car's own forward motion
    assert result.motion_match > 0.9
    for side in ("left", "right"):
        assert result.side_match[side] > 0.8 > 0.3 > result.unwarped_match[side]
    path = tmp_path / "camera.json"
    path.write_text(json.dumps(result.to_json()))
    assert load_camera(path) == result.camera


def test_side_match_counts_only_ground_the_centre_camera_saw(sim_log):
    from e2e_drive.replay.camera import _SideMatch

    folder, _, _ = sim_log
    log = load_log(folder)
    rig = CameraRig()
    frames = {name: [read_frame(log.images[name][40])] for name in ("center", "left", "right")}
    match = _SideMatch(rig, frames["center"], {"left": frames["left"], "right": frames["right"]})
    warp = ViewWarp(rig)
    for side, outer in (("left", 0), ("right", -1)):
        seen = match.seen(warp, side)
        # The left camera sees ground left of what the centre camera saw (and the right camera to the right),
        # and more of it near the car, where the side shift is largest.
        assert not seen[-1, outer] and seen[0, seen.shape[1] // 2] and seen[-1, seen.shape[1] // 2]
        assert seen[:, outer].mean() < seen[:, -1 - outer].mean()
        # Each seen pixel's ground point projects inside the centre frame (independently, through the rig).
        ground = warp.homographies(0.0, 0.0, side)[0]
        rows, cols = np.nonzero(seen)
        points = np.stack([cols + match.margin, rows + match.top, np.ones(len(rows))])
        source = np.linalg.inv(ground) @ points
        assert (source[0] / source[2]).min() >= 0 and (source[0] / source[2]).max() <= rig.size[1] - 1
    full = match.score(rig, full_resolution=True)
    small = match.score(rig)
    assert min(full.values()) > 0.95 and min(small.values()) > 0.95  # the true geometry, seen pixels only
    assert max(match.score(rig, warped=False).values()) < 0.5


# --- a driver that sees frames: replay autonomy vs the simulator's closed loop ---------------------------------

def test_replay_autonomy_agrees_with_the_simulators(sim_log):
    folder, track, _ = sim_log
    driver = road_follower(track)
    replayed = replay(folder, driver, camera=CameraRig(), profile="sim").total
    driven = drive(driver, [track], laps=1, max_seconds=replayed.elapsed_seconds, progress=False)[0]
    assert abs(replayed.autonomy - driven.autonomy) <= 5.0
    assert replayed.mean_abs_offset == pytest.approx(driven.mean_abs_offset, abs=0.2)
    # A driver that pulls to one side drifts in both, by about as much.
    biased = road_follower(track, bias=0.05)
    replayed = replay(folder, biased, camera=CameraRig(), profile="sim", max_offset=6.0).total
    driven = drive(biased, [track], laps=1, max_seconds=replayed.elapsed_seconds, progress=False)[0]
    assert replayed.mean_abs_offset == pytest.approx(driven.mean_abs_offset, rel=0.3)


def test_replay_video_is_written(sim_log, tmp_path):
    import cv2

    folder, track, _ = sim_log
    video = tmp_path / "replay.mp4"
    replay(folder, 0.0, profile="sim", camera=CameraRig(), video=video, end=0.2)
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) >= 40
    capture.release()
    assert not list(tmp_path.glob("*.tmp*"))


# --- bad input: clear errors naming the file ------------------------------------------------------------

def test_log_without_time_stamps_names_the_file(udacity_log, tmp_path):
    folder = udacity_log(tmp_path / "log", n=4)  # image names carry no time
    with pytest.raises(DataError, match=r"driving_log\.csv: 4 of 4 rows have no time stamp"):
        replay(folder, "recorded")


def test_log_without_speed_names_the_file_and_asks_for_speed(tmp_path):
    frame = np.zeros((16, 32, 3), np.uint8)
    write_frame(tmp_path / "f.png", frame)
    source = str(tmp_path / "catalog_0.catalog")
    log = DrivingLog.from_columns(center=[str(tmp_path / "f.png")] * 3, steering=[0, 0, 0],
                                  timestamp=[0.0, 0.05, 0.1], source=source, row=range(3))
    with pytest.raises(DataError, match=r"catalog_0\.catalog: 3 of 3 rows have no speed.*--speed"):
        replay(log, "recorded", profile="donkey")
    assert replay(log, "recorded", profile="donkey", speed=2.0).total.elapsed_seconds == pytest.approx(0.1)


def test_tub_with_stamps_written_after_the_drive_is_refused(tub, tmp_path):
    folder = tub(tmp_path / "tub", records=6)  # _timestamp_ms 1 ms apart
    with pytest.raises(DataError, match=r"catalog_0\.catalog: time stamps are 1\.0 ms apart"):
        replay(folder, "recorded", profile="donkey", speed=2.0)


def test_single_row_names_the_file(sim_log):
    folder, _, _ = sim_log
    with pytest.raises(DataError, match=r"driving_log\.csv: only 1 row"):
        replay(load_log(folder)[0], "recorded", profile="sim")


def test_calibration_of_another_frame_size_names_the_file(sim_log, tmp_path):
    folder, track, _ = sim_log
    path = tmp_path / "small_camera.json"
    camera = {"height": 0.2, "pitch_deg": 20, "focal": 46, "forward": 0.15, "side_offset": 0, "bonnet_rows": 0,
              "size": [120, 160]}
    path.write_text(json.dumps({"camera": camera}))
    with pytest.raises(DataError, match=r"small_camera\.json: the camera calibration is for 160x120 frames"):
        replay(folder, road_follower(track), camera=path, profile="sim")
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"small_camera\.json: not a camera calibration JSON"):
        replay(folder, road_follower(track), camera=path, profile="sim")


def test_calibrating_a_single_camera_log_is_refused(tub, tmp_path):
    folder = tub(tmp_path / "tub", records=4)
    with pytest.raises(DataError, match=r"no left or right camera frames.*--camera"):
        calibrate(folder)


def test_bad_arguments_are_refused(sim_log):
    folder, _, _ = sim_log
    with pytest.raises(ValueError, match="--end must be greater than --start"):
        replay(folder, "recorded", start=0.6, end=0.5)
    with pytest.raises(ValueError, match="--max-offset"):
        replay(folder, "recorded", max_offset=math.nan)
    with pytest.raises(ValueError, match="--car: unknown car profile"):
        replay(folder, "recorded", profile="tractor")


# --- the CLI ------------------------------------------------------------------------------------------

def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from e2e_drive.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_calibrate_and_replay_recorded_and_constant(sim_log, tmp_path, capsys):
    folder, _, _ = sim_log
    camera = tmp_path / "camera.json"
    code, out, _ = run_cli(capsys, "calibrate", str(folder), "--car", "sim", "--frames", "6", "--out", str(camera),
                           "--json")
    payload = json.loads(out)
    assert code == 0 and set(payload["side_match"]) == {"left", "right"} and payload["side_match"]["left"] > 0.8
    assert json.loads(camera.read_text())["camera"] == payload["camera"]
    code, out, _ = run_cli(capsys, "replay", "recorded", str(folder), "--car", "sim", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["autonomy"] == 100.0 and payload["max_abs_offset"] < 1e-9
    for key in ("autonomy", "interventions", "elapsed_seconds", "mean_abs_offset", "max_abs_offset", "frames"):
        assert key in payload
    code, out, _ = run_cli(capsys, "replay", "constant:0", str(folder), str(folder), "--car", "sim",
                           "--start", "0.5", "--end", "1", "--json")
    payload = json.loads(out)
    assert code == 0 and len(payload["logs"]) == 2 and payload["interventions"] >= 2
    assert payload["interventions"] == sum(entry["interventions"] for entry in payload["logs"])


def test_cli_replay_plot(sim_log, tmp_path, capsys):
    import cv2

    folder, _, _ = sim_log
    plot = tmp_path / "replay.png"
    code, out, _ = run_cli(capsys, "replay", "constant:0", str(folder), "--car", "sim", "--plot", str(plot), "--json")
    assert code == 0 and json.loads(out)["plot"] == str(plot) and cv2.imread(str(plot)) is not None
    # A folder that does not exist is refused before the drive, naming the flag.
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "replay", "recorded", str(folder), "--car", "sim", "--plot",
                str(tmp_path / "missing" / "r.png"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"error: argument --plot: {tmp_path / 'missing' / 'r.png'}: the folder {tmp_path / 'missing'} does not exist")


def test_cli_replays_a_model_file(sim_log, tmp_path, capsys, tiny_model):
    folder, _, _ = sim_log
    model = tmp_path / "tiny.keras"
    tiny_model(activation="relu", frame=(160, 320, 3)).save(model)
    code, out, _ = run_cli(capsys, "replay", str(model), str(folder), "--car", "sim", "--start", "0.9",
                           "--camera", str(_write_sim_camera(tmp_path)), "--json")
    payload = json.loads(out)
    assert code == 0 and payload["frames"] >= 20 and math.isfinite(payload["autonomy"])


def _write_sim_camera(tmp_path: Path) -> Path:
    from e2e_drive.replay import rig_to_json

    path = tmp_path / "sim_camera.json"
    path.write_text(json.dumps({"camera": rig_to_json(CameraRig())}))
    return path


def test_cli_errors_are_one_line(tmp_path, capsys, tub):
    folder = tub(tmp_path / "tub", records=4)
    code, _, err = run_cli(capsys, "replay", "recorded", str(folder))
    assert code == 2 and err.startswith("error: ") and "catalog_0.catalog" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "replay", "constant:3", str(folder))
    assert code == 2 and "constant steering must be in [-1, 1]" in err
    with pytest.raises(SystemExit):
        run_cli(capsys, "replay", "recorded", str(folder), "--start", "1.5")


# --- real data ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_udacity_log_calibrates(udacity_sim_a):
    result = calibrate(udacity_sim_a)
    camera = result.camera
    # The Udacity car's camera: horizon near row 60 of 160, side cameras about a metre off centre (1.6 m high).
    assert 8.0 < camera.pitch_deg < 12.0 and 0.85 < camera.side_offset < 1.2 and 90 < camera.focal < 140
    for side in ("left", "right"):
        assert result.side_match[side] >= 0.8 and result.side_match[side] > result.unwarped_match[side] + 0.2
        assert result.side_match_full_resolution[side] > result.unwarped_match[side]
    assert result.to_json()["side_match_full_resolution"] == result.side_match_full_resolution


def test_real_udacity_log_replays(udacity_sim_a):
    recorded = replay(udacity_sim_a, "recorded").total
    assert recorded.autonomy == 100.0 and recorded.max_abs_offset < 1e-9
    assert recorded.standing_frames > 100  # the car stands at the start and the end (speeds of 1e-4 mph)
    assert 30 < recorded.elapsed_seconds < 60
    assert replay(udacity_sim_a, 0.0).total.interventions > 5


def test_bench_replay_reports_against_its_baseline():
    from e2e_drive.bench.replay import bench_replay, format_replay_report

    report = bench_replay(steps=40, model_calls=5)
    assert report["steps"] >= 30 and report["replay_steps_per_second"] > 0 and report["baseline_steps_per_second"] > 0
    call = report["model_call"]
    assert call["calls"] == 5 and call["graph_ms"] > 0 and call["eager_ms"] > 0
    assert call["eager_vs_graph"] == pytest.approx(call["eager_ms"] / call["graph_ms"], abs=0.01)
    text = format_replay_report(report)
    assert "steps/s" in text and f"{call['graph_ms']:.2f} ms as a graph" in text
    assert bench_replay(steps=10, model_calls=0)["model_call"] is None


def test_several_logs_drive_together_and_each_scores_as_if_alone(sim_log, tmp_path):
    """Lanes of different logs share each model batch; every lane still reads its own log's frames."""
    folder, track, _ = sim_log
    other = tmp_path / "other"
    record_noise_free(make_track(5), other, seconds=8.0)
    driver = road_follower(track, gain=1.6)
    together = replay([folder, other], driver, camera=CameraRig(), profile="sim")
    for alone, result in zip((folder, other), together.logs):
        oracle = replay(alone, driver, camera=CameraRig(), profile="sim").total
        assert result.frames == oracle.frames > 0
        np.testing.assert_allclose(result.offsets, oracle.offsets, atol=1e-9)
        np.testing.assert_allclose(result.steering, oracle.steering, atol=1e-6)
        assert result.interventions == oracle.interventions


def test_paths_rebuilt_once_replay_as_the_logs_do(sim_log, tmp_path):
    folder, track, _ = sim_log
    driving_log = load_log(folder)
    paths = [reconstruct(driving_log, get_profile("sim"))]
    driver = road_follower(track)
    rebuilt = replay(driving_log, driver, camera=CameraRig(), profile="sim", piece_seconds=5.0).total
    given = replay(driving_log, driver, camera=CameraRig(), profile="sim", piece_seconds=5.0,
                   trajectories=paths).total
    np.testing.assert_array_equal(given.offsets, rebuilt.offsets)
    assert given.autonomy == rebuilt.autonomy
    with pytest.raises(ValueError, match="one path per log"):
        replay([driving_log, driving_log], "recorded", profile="sim", trajectories=paths)
    with pytest.raises(ValueError, match="one path per log"):
        replay(driving_log[:10], "recorded", profile="sim", trajectories=paths)


def test_shift_gain_is_how_strongly_a_driver_steers_back_from_a_moved_viewpoint(sim_log):
    """``bench recipe``'s shift gain, against the same driver on frames the simulator renders from the true poses
    moved sideways (no warp): a frame-only road follower steers back in proportion to its gain."""
    from data_tools.augment import pursuit_correction
    from e2e_drive.bench.recipe import shift_gain
    from e2e_drive.closed_loop import log_spec
    from e2e_drive.recipe import VIEWPOINT_FRACTION

    folder, track, poses = sim_log
    log = load_log(folder)
    spec = log_spec(log, "sim", CameraRig())
    assert shift_gain(lambda frames: np.zeros(len(frames)), log, spec, frames=10) == 0.0
    weak, strong = (shift_gain(road_follower(track, gain=g), log, spec, frames=40) for g in (0.5, 1.0))
    assert weak > 0.05 and strong == pytest.approx(2 * weak, rel=0.05)
    # The oracle: views rendered from poses moved left and right of the recorded ones.
    profile, lateral = spec.profile, VIEWPOINT_FRACTION * spec.profile.intervention_offset
    rows = np.unique(np.linspace(0, len(log) - 1, 40).round().astype(int))
    camera, driver = Camera(track, CameraRig()), road_follower(track, gain=1.0)

    def views(side: float) -> np.ndarray:
        return np.stack([camera.render(x - side * np.sin(h), y + side * np.cos(h), h) for x, y, h in poses[rows]])

    speed = float(np.median(log.speed)) * profile.speed_scale
    car = profile.car
    taught = (pursuit_correction(lateral, 0.0, speed, car.wheelbase, car.max_steer_deg)
              - pursuit_correction(-lateral, 0.0, speed, car.wheelbase, car.max_steer_deg))
    rendered = float(np.mean(driver(views(lateral)) - driver(views(-lateral))) / taught)
    assert strong == pytest.approx(rendered, rel=0.1), (strong, rendered)
