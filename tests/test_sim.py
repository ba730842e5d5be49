"""Simulator geometry: tracks, camera, car, expert, autonomy metric."""

from __future__ import annotations

import numpy as np
import pytest

from e2e_drive.sim import Camera, CarParams, CarState, Expert, autonomy, make_track, pure_pursuit, step
from e2e_drive.sim.track import MIN_RADIUS, SAMPLE_SPACING, Theme, Track


@pytest.fixture(scope="module")
def track() -> Track:
    return make_track(4)


def _segments_cross(points: np.ndarray) -> bool:
    """Brute-force oracle: does the closed polyline cross itself (non-adjacent segments)?"""
    a, b = points, np.roll(points, -1, axis=0)
    n = len(points)

    def orient(p, q, r):
        cross = (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])
        return np.sign(cross)

    for i in range(n):
        j = np.arange(i + 2, n if i > 0 else n - 1)
        if len(j) == 0:
            continue
        d1, d2 = orient(a[i], b[i], a[j]), orient(a[i], b[i], b[j])
        d3, d4 = orient(a[j], b[j], a[i]), orient(a[j], b[j], b[i])
        if np.any((d1 * d2 < 0) & (d3 * d4 < 0)):
            return True
    return False


def test_same_seed_same_track_and_seeds_differ():
    first, again, other = make_track(7), make_track(7), make_track(8)
    np.testing.assert_array_equal(first.centre, again.centre)
    np.testing.assert_array_equal(first.texture, again.texture)
    assert first.centre.shape != other.centre.shape or not np.allclose(first.centre, other.centre)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 11])
def test_tracks_are_smooth_closed_and_never_cross(seed):
    track = make_track(seed)
    steps = np.linalg.norm(np.diff(np.vstack([track.centre, track.centre[:1]]), axis=0), axis=1)
    np.testing.assert_allclose(steps, track.spacing, rtol=0.02)  # closing segment included
    assert track.spacing == pytest.approx(SAMPLE_SPACING, rel=0.01)
    assert track.length == pytest.approx(np.sum(steps), rel=1e-3)
    # Radius from three consecutive points (circumscribed circle), independent of track.curvature.
    p0, p1, p2 = np.roll(track.centre, 1, 0), track.centre, np.roll(track.centre, -1, 0)
    a, b, c = (np.linalg.norm(p1 - p0, axis=1), np.linalg.norm(p2 - p1, axis=1), np.linalg.norm(p2 - p0, axis=1))
    cross = np.abs((p1 - p0)[:, 0] * (p2 - p0)[:, 1] - (p1 - p0)[:, 1] * (p2 - p0)[:, 0])
    assert np.min(a * b * c / np.maximum(2 * cross, 1e-12)) >= MIN_RADIUS * 0.98
    assert np.ptp(track.width) > 0.3 and 5.5 < track.width.min() and track.width.max() < 9
    left, right = track.edges()
    for polyline in (track.centre, left, right):
        assert not _segments_cross(polyline[::4])


def test_themes_vary_with_the_seed():
    themes = {make_track(seed).theme.road for seed in range(8)}
    grounds = {make_track(seed).theme.ground for seed in range(8)}
    assert len(themes) >= 2 and len(grounds) >= 2


def test_locate_and_point_at_are_inverse(track):
    stations = np.array([3.0, 100.25, track.length - 1.0])
    offsets = np.array([1.2, -0.7, 0.0])
    _, found_station, found_offset = track.locate(track.point_at(stations, offsets))
    np.testing.assert_allclose(found_station, stations, atol=0.05)
    np.testing.assert_allclose(found_offset, offsets, atol=0.05)


def test_homography_render_matches_per_pixel_ray_cast(track):
    camera = Camera(track)
    for i, name in ((0, "center"), (150, "left"), (333, "right")):
        x, y = track.point_at(np.array([i * track.spacing]), 0.8)[0]
        fast = camera.render(x, y, track.heading[i] + 0.05, name).astype(int)
        slow = camera.render_raycast(x, y, track.heading[i] + 0.05, name).astype(int)
        difference = np.abs(fast - slow)
        assert fast.shape == (160, 320, 3)
        assert difference.mean() < 0.5 and np.percentile(difference, 99.9) <= 3


def test_frame_layout_matches_the_udacity_crop(track):
    camera = Camera(track)
    horizon = camera.rig.horizon_row
    assert 45 <= horizon <= 65  # the sky is cut by default_crop(160)[0] = 60
    frame = camera.render(*track.centre[0], track.heading[0])
    other = camera.render(*track.centre[200], track.heading[200])
    same = np.all(frame == other, axis=-1)
    # Sky and bonnet do not move with the car, the road does; the bonnet stays in the 25 cropped rows.
    assert same[: int(horizon) - 3].all()
    assert same[160 - 21 :, 120:200].all() and not same[160 - 25 - 3, 120:200].all()
    assert not same[60:135].all()


def _straight_road(width: float = 7.0, ppm: float = 8.0) -> Track:
    """A straight north-south road centred on x = 0, painted symmetric by construction."""
    theme = Theme(name="test", road=(90, 90, 90), ground=(60, 140, 60), edge_line=None, centre_line=None,
                  sky_top=(80, 130, 200), sky_horizon=(190, 210, 230), bonnet=(30, 30, 35), brightness=1.0,
                  road_noise=0, ground_noise=0, shadows=0, clutter=0, clutter_colours=((0, 0, 0),))
    cols, rows = 401, 1601
    x = (np.arange(cols) - (cols - 1) / 2) / ppm
    texture = np.empty((rows, cols, 3), np.uint8)
    texture[:] = theme.ground
    texture[:, np.abs(x) <= width / 2] = theme.road
    texture[::24, np.abs(x) < 0.1] = (255, 255, 255)  # markings along the centre line
    centre = np.stack([np.zeros(400), np.arange(400) * SAMPLE_SPACING - 100.0], axis=1)
    return Track(seed=-1, centre=centre, width=np.full(400, width), theme=theme, texture=texture,
                 origin=(-(cols - 1) / 2 / ppm, 100.0 + 0.5), pixels_per_metre=ppm)


def test_centred_car_on_a_straight_road_sees_a_symmetric_road():
    camera = Camera(_straight_road())
    frame = camera.render(0.0, 0.0, np.pi / 2).astype(int)
    assert np.abs(frame - frame[:, ::-1]).mean() < 0.5
    # Off to the left of the road, the road appears to the right of the image centre.
    shifted = camera.render(-1.5, 0.0, np.pi / 2)
    road = np.all(shifted[120] == (90, 90, 90), axis=-1)
    assert np.mean(np.nonzero(road)[0]) > 159.5 + 20
    assert np.abs(shifted.astype(int) - shifted[:, ::-1]).mean() > 5


def test_left_and_right_cameras_see_the_road_shifted():
    camera = Camera(_straight_road())
    centre_of_road = {}
    for name in ("left", "center", "right"):
        frame = camera.render(0.0, 0.0, np.pi / 2, name)
        centre_of_road[name] = np.mean(np.nonzero(np.all(frame[120] == (90, 90, 90), axis=-1))[0])
    assert centre_of_road["left"] > centre_of_road["center"] + 20 > centre_of_road["right"] + 40


def test_flipped_frame_is_the_mirrored_track_and_steering_changes_sign(track):
    mirrored = track.mirror()
    camera, mirror_camera = Camera(track), Camera(mirrored)
    for i, offset, turn in ((10, 0.5, 0.1), (250, -1.0, -0.05)):
        x, y = track.point_at(np.array([i * track.spacing]), offset)[0]
        heading = track.heading[i] + turn
        for name, mirror_name in (("center", "center"), ("left", "right")):
            frame = camera.render(x, y, heading, name).astype(int)
            flipped = mirror_camera.render(-x, y, np.pi - heading, mirror_name)[:, ::-1].astype(int)
            assert np.abs(frame - flipped).mean() < 0.5
        params = CarParams()
        original = pure_pursuit(track, CarState.at(x, y, heading, 8.0), params)
        reflected = pure_pursuit(mirrored, CarState.at(-x, y, np.pi - heading, 8.0), params)
        assert abs(original[0]) > 0.01
        np.testing.assert_allclose(reflected, -original, atol=1e-6)


def test_positive_steering_turns_right_on_the_bicycle_circle():
    params = CarParams(steer_rate=100.0)
    state = CarState.at(0.0, 0.0, np.pi / 2, speed=5.0, steering=0.4)  # heading north
    radius = params.wheelbase / np.tan(0.4 * params.max_steer)
    circumference_time = 2 * np.pi * radius / 5.0
    points = []
    for _ in range(400):
        state = step(state, 0.4, circumference_time / 400, params)
        points.append(state.xy[0])
    points = np.asarray(points)
    # A right turn from heading north circles around (radius, 0), clockwise, back to the start.
    np.testing.assert_allclose(np.linalg.norm(points - [radius, 0.0], axis=1), radius, rtol=1e-3)
    assert points[20, 0] > 0
    np.testing.assert_allclose(points[-1], [0.0, 0.0], atol=1e-2 * radius)


def test_steering_rate_is_limited():
    params = CarParams(steer_rate=2.0)
    state = step(CarState.at(0.0, 0.0, 0.0, 8.0), 1.0, 0.1, params)
    np.testing.assert_allclose(state.steering, 0.2)
    state = step(state, -1.0, 0.05, params)
    np.testing.assert_allclose(state.steering, 0.1)


def test_expert_completes_a_lap_near_the_centre_and_drifts_with_corrective_labels(track):
    params = CarParams()
    expert = Expert(track, np.random.default_rng(0), params)
    state = CarState.at(*track.centre[0], track.heading[0], params.speed)
    travelled, station, dt = 0.0, 0.0, 0.1
    offsets, labels = [], []
    while travelled < track.length:
        command, label = expert.act(state, dt)
        state = step(state, command, dt, params)
        index, new_station, offset = track.locate(state.xy)
        travelled += (new_station[0] - station + track.length / 2) % track.length - track.length / 2
        station = new_station[0]
        offsets.append(offset[0])
        labels.append(label[0])
        assert abs(offset[0]) < track.intervention_offset[index[0]]
        assert len(offsets) < 2 * track.length / (params.speed * dt)
    offsets, labels = np.asarray(offsets), np.asarray(labels)
    assert np.mean(np.abs(offsets)) < 0.8 and np.max(np.abs(offsets)) > 0.8  # drifts happened
    # Corrective labels: left of the centre (positive offset) the label steers right (positive), and vice versa.
    far = np.abs(offsets) > 0.6
    assert np.corrcoef(offsets[far], labels[far])[0, 1] > 0.3


def test_noise_free_expert_stays_on_the_centre_line(track):
    params = CarParams()
    expert = Expert(track, np.random.default_rng(0), params, drift_every=(1e9, 1e9), noise=0.0)
    state = CarState.at(*track.centre[0], track.heading[0], params.speed)
    offsets = []
    for _ in range(int(track.length / (params.speed * 0.1))):
        command, label = expert.act(state, 0.1)
        np.testing.assert_allclose(command, label)
        state = step(state, command, 0.1, params)
        offsets.append(track.locate(state.xy)[2][0])
    assert np.mean(np.abs(offsets)) < 0.25


@pytest.mark.parametrize(
    "interventions, elapsed, expected",
    [(0, 100.0, 100.0), (10, 600.0, 90.0), (1, 60.0, 90.0), (1, 6.0, 0.0), (3, 6.0, -200.0), (2, 1200.0, 99.0)],
)
def test_autonomy_formula_on_hand_made_cases(interventions, elapsed, expected):
    assert autonomy(interventions, elapsed) == pytest.approx(expected)


def test_autonomy_rejects_bad_input():
    with pytest.raises(ValueError, match="elapsed_seconds"):
        autonomy(0, 0.0)
    with pytest.raises(ValueError, match="interventions"):
        autonomy(-1, 10.0)


def test_side_cameras_sit_where_the_0_2_steering_correction_is_right():
    # data_tools.augment.ChooseCamera adds +0.2 for the left camera and -0.2 for the right one: the expert's
    # label from a car shifted sideways by the cameras' offset must be about that.
    road, params, rig = _straight_road(), CarParams(), Camera(_straight_road()).rig
    centred = pure_pursuit(road, CarState.at(0.0, 0.0, np.pi / 2, params.speed), params)[0]
    as_left = pure_pursuit(road, CarState.at(-rig.side_offset, 0.0, np.pi / 2, params.speed), params)[0]
    as_right = pure_pursuit(road, CarState.at(rig.side_offset, 0.0, np.pi / 2, params.speed), params)[0]
    assert centred == pytest.approx(0.0, abs=1e-9)
    assert as_left == pytest.approx(0.2, abs=0.03) and as_right == pytest.approx(-0.2, abs=0.03)


def test_sample_frames_are_seeded_and_varied():
    from e2e_drive.sim import sample_frames

    frames = sample_frames(4, seed=5, tracks=(4,))
    assert frames.shape == (4, 160, 320, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, sample_frames(4, seed=5, tracks=(4,)))
    assert not np.array_equal(frames, sample_frames(4, seed=6, tracks=(4,)))
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 5
