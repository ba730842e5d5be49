"""ClosedLoopSpec: one description of what a model is driven through, scored by replay or by the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools import DataError, DrivingLog, load_log, write_frame
from e2e_drive.closed_loop import ClosedLoopSpec, log_spec, strict_warning, strictness, validation_spec
from e2e_drive.replay import get_profile, reconstruct, replay
from e2e_drive.sim import CameraRig, drive, make_track, record
from e2e_drive.train_config import TrainConfig

TRACK = 4


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A few seconds of the simulator's expert on one track (its recording.json names car, camera and track)."""
    out = tmp_path_factory.mktemp("closed_loop")
    record(TRACK, out, laps=0.2, progress=False)
    return out


def steer_left(frames: np.ndarray) -> np.ndarray:
    """A driver that pulls to one side: interventions on any track."""
    return np.full(len(frames), -0.25, np.float32)


def test_a_log_spec_scores_what_replay_scores(recording):
    driving_log = load_log(recording)
    spec = log_spec(driving_log, "sim", CameraRig())
    assert spec.by == "replay" and len(spec.paths) == len(spec.parts) == 1 and spec.rows == len(driving_log)
    oracle = replay(driving_log, steer_left, camera=CameraRig(), profile="sim").total
    scored = spec.score(steer_left)
    assert scored["interventions"] == oracle.interventions > 0
    assert scored["autonomy"] == pytest.approx(oracle.autonomy)
    assert scored["points_per_intervention"] == pytest.approx(600.0 / oracle.elapsed_seconds)
    assert scored["too_short"] == (600.0 / oracle.elapsed_seconds > 20.0)
    # The same spec scores again (nothing rebuilt), and pieces drive the same log together.
    assert spec.score(steer_left)["autonomy"] == scored["autonomy"]
    pieces = replay(driving_log, steer_left, camera=CameraRig(), profile="sim", piece_seconds=2.0).total
    assert spec.score(steer_left, piece_seconds=2.0)["interventions"] == pieces.interventions


def test_a_late_path_holds_the_recorded_steering_seconds_late_within_each_segment(tmp_path):
    write_frame(tmp_path / "f.png", np.zeros((16, 32, 3), np.uint8))
    # 10 fps, then a 5 s pause that splits the log into two segments.
    times = [0.0, 0.1, 0.2, 0.3, 5.3, 5.4, 5.5]
    steering = [0.0, 0.2, 0.4, 0.6, -0.5, -0.3, -0.1]
    driving_log = DrivingLog.from_columns(center=[str(tmp_path / "f.png")] * 7, steering=steering, source="LOG",
                                          row=list(range(7)), speed=[10.0] * 7, timestamp=times)
    path = reconstruct(driving_log, get_profile("sim"))
    assert path.segments == 2
    np.testing.assert_allclose(path.late(0.0).steering, steering)
    np.testing.assert_allclose(path.late(0.1).steering, [0.0, 0.0, 0.2, 0.4, -0.5, -0.5, -0.3], atol=1e-6)
    np.testing.assert_allclose(path.late(0.05).steering, [0.0, 0.1, 0.3, 0.5, -0.5, -0.4, -0.2], atol=1e-6)
    late = path.late(0.1)  # only the commands change, never the recorded path
    assert np.array_equal(late.x, path.x) and np.array_equal(late.heading, path.heading)


def test_strictness_drives_the_recorded_steering_late_and_blind(recording):
    spec = log_spec(load_log(recording), "sim", CameraRig())
    (path,) = spec.paths
    assert strictness(spec, 0.0) == {"late_seconds": 0.0, "late_autonomy": 100.0, "late_interventions": 0,
                                     "strict": False}  # the recorded driver itself
    for seconds, frames in ((0.1, 1), (0.3, 3)):  # the recording is 10 fps: whole frames late
        shifted = np.concatenate([np.full(frames, path.steering[0]), path.steering[:-frames]])
        oracle = replay(spec.parts[0], "recorded", profile="sim", trajectories=[
            type(path)(**{**path.__dict__, "steering": shifted})]).total
        result = strictness(spec, seconds)
        assert result["late_interventions"] == oracle.interventions
        assert result["late_autonomy"] == pytest.approx(oracle.autonomy)
        assert result["strict"] == (oracle.autonomy < 50.0)
    # 0.1 s late the expert still drives this span (a span that can judge), 0.3 s late it does not.
    assert not strictness(spec)["strict"] and strictness(spec, 0.3)["strict"]
    assert spec.score(steer_left)["late_autonomy"] == 100.0  # every replayed score says how strict its span is
    warning = strict_warning(strictness(spec, 0.3))
    assert warning.startswith("a strict span: the recorded steering 0.3 s late scores") and "--speed" in warning
    assert strict_warning(strictness(spec)) == ""


def test_the_simulator_drives_its_own_recordings_tracks(recording):
    spec = log_spec(load_log(recording), "sim", simulate=True)
    assert spec.by == "simulator" and spec.tracks == [TRACK] and spec.paths == ()
    scored = spec.score(steer_left)
    oracle = drive(steer_left, [make_track(TRACK)], laps=1.0, progress=False)[0]
    assert scored["tracks"] == [TRACK]
    assert scored["autonomy"] == pytest.approx(oracle.autonomy)
    assert scored["interventions"] == oracle.interventions
    with pytest.raises(ValueError, match="simulator drives"):
        spec.replay(steer_left)


def test_a_log_without_speed_is_refused_naming_the_flag(tmp_path):
    write_frame(tmp_path / "f.png", np.zeros((16, 32, 3), np.uint8))
    driving_log = DrivingLog.from_columns(center=[str(tmp_path / "f.png")] * 3, steering=[0, 0, 0],
                                          timestamp=[0.0, 0.05, 0.1], source=str(tmp_path / "catalog_0.catalog"),
                                          row=range(3))
    with pytest.raises(DataError, match="no speed.*--speed"):
        log_spec(driving_log, "donkey", CameraRig())
    assert log_spec(driving_log, "donkey", CameraRig(size=(16, 32)), speed=2.0).paths[0].speed[0] == 2.0


def test_validation_spec_says_why_not(recording):
    driving_log = load_log(recording)
    frame_shape = (160, 320, 3)
    assert validation_spec(TrainConfig(car="sim"), driving_log[:0], None, frame_shape) == (None, "no validation rows")
    spec, why = validation_spec(TrainConfig(car="sim", strategy="multiworker"), driving_log, None, frame_shape)
    assert spec is None and "multiworker" in why
    spec, why = validation_spec(TrainConfig(car="sim"), driving_log, None, frame_shape)
    assert why is None and isinstance(spec, ClosedLoopSpec) and spec.by == "simulator"
    assert spec.profile == get_profile("sim")
