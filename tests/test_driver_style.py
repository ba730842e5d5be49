"""Simulated driving styles: what each input device does to the steering a driver wants, in seconds not frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e2e_drive.sim.driver_style import STYLES, StyledDriver, get_style


class ScriptedIntent:
    """Stands in for the expert's intent only: the steering wanted at each call, from a known series."""

    def __init__(self, wanted):
        self.wanted = list(wanted)
        self.calls = 0

    def act(self, state, dt):
        value = self.wanted[self.calls]
        self.calls += 1
        return np.array([value]), np.array([0.123])  # the label a human log never sees


def _drive(style, wanted, fps, seed=0):
    driver = StyledDriver(ScriptedIntent(wanted), get_style(style), np.random.default_rng(seed))
    commands, recorded = zip(*(driver.act(None, 1.0 / fps) for _ in wanted))
    return np.concatenate(commands), np.concatenate(recorded)


@pytest.mark.parametrize("fps", [10, 13, 20])
def test_a_late_driver_is_late_by_the_same_seconds_at_any_frame_rate(fps):
    t = np.arange(0, 20, 1.0 / fps)
    wanted = 0.4 * np.sin(2 * np.pi * t / 5.0)
    command, recorded = _drive("late", wanted, fps)
    np.testing.assert_array_equal(command, recorded)  # a human log records what was steered
    lags = np.arange(0, int(fps))  # 0..1 s
    errors = [np.mean(np.abs(command[lag:] - wanted[: len(wanted) - lag])) for lag in lags]
    assert lags[int(np.argmin(errors))] / fps == pytest.approx(0.3, abs=0.5 / fps)


@pytest.mark.parametrize("fps", [10, 20])
def test_keyboard_taps_average_what_the_driver_wants_and_rest_at_exactly_zero(fps):
    seconds = 30
    wanted = np.concatenate([np.full(seconds * fps // 3, w) for w in (0.05, 0.2, -0.1)])
    command, recorded = _drive("keyboard", wanted, fps)
    np.testing.assert_array_equal(command, recorded)
    assert np.mean(recorded == 0.0) > 0.3  # released keys: exactly 0
    assert len(np.unique(recorded)) <= 40  # few, quantised values
    np.testing.assert_array_equal(recorded * 64, np.round(recorded * 64))
    third = len(wanted) // 3
    for k, w in enumerate((0.05, 0.2, -0.1)):
        # After a second to settle, the taps average the wanted steering (sigma-delta) within a few percent.
        part = recorded[k * third + fps: (k + 1) * third]
        assert np.mean(part) == pytest.approx(w, abs=0.02), (k, w)
    # A key held ramps by the same steering per second at any frame rate.
    ramp = np.diff(recorded)[(np.diff(recorded) > 0) & (recorded[:-1] > 0)]
    np.testing.assert_allclose(ramp, STYLES["keyboard"].keyboard_ramp / fps, atol=1 / 64)


def test_a_joystick_has_a_dead_zone_and_8_bit_steps():
    wanted = np.linspace(-0.5, 0.5, 201)
    _, recorded = _drive("joystick", wanted, 10)
    assert np.all(recorded[np.abs(wanted) < 0.04] == 0)
    np.testing.assert_allclose(recorded * 127, np.round(recorded * 127), atol=1e-9)
    np.testing.assert_allclose(recorded[np.abs(wanted) > 0.1], wanted[np.abs(wanted) > 0.1], atol=1 / 127)


def test_the_expert_records_its_corrective_label_and_unknown_styles_are_named():
    command, recorded = _drive("expert", [0.2, -0.1], 10)
    np.testing.assert_array_equal(command, [0.2, -0.1])
    np.testing.assert_array_equal(recorded, [0.123, 0.123])
    with pytest.raises(ValueError, match="--driver: unknown driving style 'wheelie'; expected one of: expert"):
        get_style("wheelie")


def test_cli_records_a_keyboard_driver_at_13_fps(tmp_path, capsys):
    from data_tools import read_log
    from e2e_drive.cli import main
    from e2e_drive.sim import read_recording

    out = tmp_path / "kb"
    assert main(["sim", "record", "--track", "4", "--laps", "0.2", "--out", str(out), "--driver", "keyboard",
                 "--fps", "13", "--speed", "10", "--json", "--quiet"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["driver"] == "keyboard" and payload["fps"] == 13
    recording = read_recording(out)
    assert recording.driver == "keyboard" and recording.fps == 13 and recording.car.speed == 10
    log = read_log(out)
    np.testing.assert_allclose(np.diff(log.timestamp), 1 / 13, atol=2e-3)  # the file names carry the clock
    np.testing.assert_allclose(log.speed, 10.0 * 2.2369363, rtol=1e-4)  # the Udacity column is in mph
    assert np.mean(log.steering == 0) > 0.2 and len(np.unique(log.steering)) < 30
    with pytest.raises(SystemExit) as refused:
        main(["sim", "record", "--out", str(tmp_path / "x"), "--fps", "0"])
    assert refused.value.code == 2 and "--fps: expected a number in (0, 120]" in capsys.readouterr().err
