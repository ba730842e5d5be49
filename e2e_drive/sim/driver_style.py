"""Driving styles for simulator recordings: the logs of many kinds of human drivers, with the closed loop known.

The ``expert`` style is the simulator's own recording: the car follows the noisy, drifting pure pursuit of
``Expert`` and every frame is labelled with the corrective pursuit steering from where the car is. The human
styles record what they steered (a real log holds nothing else), shaped like the input device:

* ``analog``: a wheel or gamepad stick: the drifting pursuit with more, smoother wobble and a little jitter.
* ``keyboard``: arrow keys, as in the Udacity simulator: while a key is held the steering ramps toward full
  lock, and it snaps back to exactly 0 when the key is released; the driver taps the keys so that the steering
  averages what it wants (most frames are 0, the values are few and quantised).
* ``joystick``: an 8-bit stick with a dead zone: small commands read as 0, the rest in steps of 1/127.
* ``late``: an analog driver who reacts ``reaction_seconds`` late (the command computed from the view of
  0.3 s ago).

Every random draw comes from the recording's generator, and every time constant is in seconds, so a style
means the same at any frame rate.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from e2e_drive.sim.car import CarState
from e2e_drive.sim.expert import Expert


@dataclass(frozen=True)
class DriverStyle:
    """How a simulated driver turns the steering it wants into what it steers and what the log records.

    Args:
        name: the ``--driver`` value.
        description: one line for ``--help``.
        records_command: the log records the command driven (a human log); else the expert's corrective label.
        noise: standard deviation of the driver's smooth wobble (Ornstein-Uhlenbeck, 0.5 s). Defaults to `0.04`.
        jitter: standard deviation of frame-to-frame noise on the command. Defaults to `0`.
        keyboard_ramp: full-lock per second while a key is held (0: not a keyboard). Defaults to `0`.
        dead_zone: commands below this magnitude read 0. Defaults to `0`.
        quantum: the command is rounded to multiples of this (0: not quantised). Defaults to `0`.
        reaction_seconds: the command is the one wanted this long ago. Defaults to `0`.
    """

    name: str
    description: str
    records_command: bool = True
    noise: float = 0.04
    jitter: float = 0.0
    keyboard_ramp: float = 0.0
    dead_zone: float = 0.0
    quantum: float = 0.0
    reaction_seconds: float = 0.0


STYLES: dict[str, DriverStyle] = {
    s.name: s
    for s in (
        DriverStyle("expert", "the simulator's expert: drifting pure pursuit, every frame labelled with the "
                    "corrective steering back to the centre", records_command=False),
        DriverStyle("analog", "a wheel or stick: the command it steered, with wobble and jitter", noise=0.06,
                    jitter=0.015),
        DriverStyle("keyboard", "arrow keys: steering ramps while a key is held and snaps to 0 on release",
                    noise=0.04, keyboard_ramp=2.5, quantum=1 / 64),
        DriverStyle("joystick", "an 8-bit stick with a dead zone", noise=0.05, dead_zone=0.06, quantum=1 / 127),
        DriverStyle("late", "an analog driver reacting 0.3 s late", noise=0.05, jitter=0.01, reaction_seconds=0.3),
    )
}


def get_style(name: str | DriverStyle) -> DriverStyle:
    if isinstance(name, DriverStyle):
        return name
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"--driver: unknown driving style {name!r}; expected one of: {', '.join(STYLES)}") from None


class StyledDriver:
    """The expert's intent through a ``DriverStyle``: ``act(state, dt) -> (command, recorded steering)``."""

    def __init__(self, expert: Expert, style: DriverStyle, rng: np.random.Generator):
        self.expert = expert
        self.style = style
        self.rng = rng
        self._wanted: collections.deque[float] = collections.deque()
        self._steering = 0.0  # the keyboard's current steering
        self._owed = 0.0  # wanted minus steered, summed: what the key taps still have to deliver

    def act(self, state: CarState, dt: float) -> tuple[np.ndarray, np.ndarray]:
        command, label = self.expert.act(state, dt)
        style = self.style
        if not style.records_command:
            return command, label
        wanted = float(command[0])
        if style.reaction_seconds:
            self._wanted.append(wanted)
            lag = int(round(style.reaction_seconds / dt))
            wanted = self._wanted[0] if len(self._wanted) > lag else 0.0
            while len(self._wanted) > lag:
                self._wanted.popleft()
        if style.jitter:
            wanted += style.jitter * float(self.rng.normal())
        steered = self._keyboard(wanted, dt) if style.keyboard_ramp else wanted
        if abs(steered) < style.dead_zone:
            steered = 0.0
        if style.quantum:
            steered = round(steered / style.quantum) * style.quantum
        steered = float(np.clip(steered, -1.0, 1.0))
        return np.array([steered]), np.array([steered])

    def _keyboard(self, wanted: float, dt: float) -> float:
        # Sigma-delta taps: a key is held while the steering still owes the driver some turn in its direction;
        # held, the steering ramps toward full lock; released, it is exactly 0 again.
        self._owed += (wanted - self._steering) * dt
        key = float(np.sign(self._owed)) if abs(self._owed) > 0.5 * self.style.keyboard_ramp * dt * dt else 0.0
        if key == 0.0:
            self._steering = 0.0
        elif np.sign(self._steering) == key:
            self._steering = float(np.clip(self._steering + key * self.style.keyboard_ramp * dt, -1.0, 1.0))
        else:
            self._steering = key * self.style.keyboard_ramp * dt
        return self._steering
