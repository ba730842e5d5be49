"""The expert driver: pure pursuit on the centre line, with noise and recoveries.

Every few seconds the expert lets the car drift toward one side of the road
(aiming at an off-centre line with a noisy command), then steers back. The
*label* it gives for each frame is always the pure-pursuit steering back to
the centre line from wherever the car is, so off-centre frames in a
recording carry corrective labels: what behavioural cloning needs to close
the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from e2e_drive.sim.car import CarParams, CarState
from e2e_drive.sim.track import Track


def pure_pursuit(track: Track, state: CarState, params: CarParams, target_offset: np.ndarray | float = 0.0,
                 lookahead: np.ndarray | None = None) -> np.ndarray:
    """Steering in [-1, 1] (positive = right) toward the line ``target_offset`` metres left of the centre.

    The goal point lies ``lookahead`` metres (default ``4 + 0.5 * speed``) ahead
    along the track; the wheel angle is ``atan(2 L sin(alpha) / d)``.
    """
    lookahead = 4.0 + 0.5 * state.speed if lookahead is None else lookahead
    _, station, _ = track.locate(state.xy)
    goal = track.point_at(station + lookahead, np.broadcast_to(target_offset, state.x.shape))
    delta = goal - state.xy
    alpha = np.arctan2(delta[:, 1], delta[:, 0]) - state.heading
    alpha = np.mod(alpha + np.pi, 2 * np.pi) - np.pi
    distance = np.maximum(np.linalg.norm(delta, axis=1), 1e-6)
    wheel = np.arctan2(2.0 * params.wheelbase * np.sin(alpha), distance)
    return np.clip(-wheel / params.max_steer, -1.0, 1.0)


@dataclass
class Expert:
    """A noisy pure-pursuit driver that drifts off centre now and then and recovers.

    Args:
        track: the track to follow.
        rng: the one source of randomness (drift timing, side, depth, steering noise).
        params: car limits. Defaults to `CarParams()`.
        drift_every: seconds between drifts, drawn uniformly from this range. Defaults to `(4, 9)`.
        drift_depth: how far toward the intervention line a drift aims (fraction). Defaults to `(0.35, 0.75)`.
        drift_seconds: how long a drift lasts, drawn from this range. Defaults to `(1.0, 2.5)`.
        noise: standard deviation of the (smoothed) steering noise. Defaults to `0.04`.

    ``act(state, dt)`` returns ``(command, label)``: what the expert does and the
    corrective steering it would give from this pose.
    """

    track: Track
    rng: np.random.Generator
    params: CarParams = CarParams()
    drift_every: tuple[float, float] = (4.0, 9.0)
    drift_depth: tuple[float, float] = (0.35, 0.75)
    drift_seconds: tuple[float, float] = (1.0, 2.5)
    noise: float = 0.04

    def __post_init__(self) -> None:
        self._clock = 0.0
        self._next_drift = float(self.rng.uniform(*self.drift_every))
        self._drift_until = -1.0
        self._target = 0.0
        self._noise = 0.0

    def act(self, state: CarState, dt: float) -> tuple[np.ndarray, np.ndarray]:
        self._clock += dt
        if self._clock >= self._next_drift:
            index, _, _ = self.track.locate(state.xy)
            limit = float(self.track.intervention_offset[index[0]])
            self._target = float(self.rng.choice([-1.0, 1.0]) * self.rng.uniform(*self.drift_depth) * limit)
            self._drift_until = self._clock + float(self.rng.uniform(*self.drift_seconds))
            self._next_drift = self._drift_until + float(self.rng.uniform(*self.drift_every))
        target = self._target if self._clock < self._drift_until else 0.0
        # Ornstein-Uhlenbeck noise: smooth wobble rather than frame-to-frame jitter.
        self._noise += -self._noise * dt / 0.5 + self.noise * np.sqrt(2 * dt / 0.5) * float(self.rng.normal())
        label = pure_pursuit(self.track, state, self.params)
        command = pure_pursuit(self.track, state, self.params, target) + self._noise
        return np.clip(command, -1.0, 1.0), label
