"""A kinematic bicycle model of the car, for one or many cars stepped together.

Steering is the Udacity log's convention: a number in [-1, 1], the fraction of
the maximum wheel angle, positive = turn right (clockwise seen from above).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CarParams:
    """Physical limits of the car.

    Args:
        wheelbase: metres between the axles. Defaults to `2.5`.
        max_steer_deg: wheel angle at steering = 1 (the Udacity sim's 25 degrees). Defaults to `25`.
        steer_rate: largest change of steering per second (fraction of full lock). Defaults to `3.0`.
        speed: cruising speed in m/s (8 m/s = 18 mph). Defaults to `8.0`.
    """

    wheelbase: float = 2.5
    max_steer_deg: float = 25.0
    steer_rate: float = 3.0
    speed: float = 8.0

    @property
    def max_steer(self) -> float:
        return float(np.radians(self.max_steer_deg))


@dataclass
class CarState:
    """Poses of ``B`` cars (rear-axle position, heading counter-clockwise from east, steering, speed)."""

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    steering: np.ndarray
    speed: np.ndarray

    @classmethod
    def at(cls, x, y, heading, speed: float, steering=0.0) -> "CarState":
        x, y, heading = (np.atleast_1d(np.asarray(v, np.float64)).copy() for v in (x, y, heading))
        return cls(x, y, heading, np.broadcast_to(np.asarray(steering, np.float64), x.shape).copy(),
                   np.full(x.shape, float(speed)))

    @property
    def xy(self) -> np.ndarray:
        return np.stack([self.x, self.y], axis=1)


def step(
    state: CarState, command: np.ndarray, dt: float, params: CarParams = CarParams(), substeps: int = 4
) -> CarState:
    """Advance the cars by ``dt`` seconds under steering ``command`` (in [-1, 1], positive = right).

    The steering moves toward the command no faster than ``params.steer_rate``;
    the pose follows ``x' = v cos(h)``, ``y' = v sin(h)``, ``h' = -v tan(steer * max) / wheelbase``.
    """
    command = np.clip(np.broadcast_to(np.asarray(command, np.float64), state.x.shape), -1.0, 1.0)
    limit = params.steer_rate * dt
    steering = state.steering + np.clip(command - state.steering, -limit, limit)
    x, y, heading = state.x.copy(), state.y.copy(), state.heading.copy()
    yaw_rate = -state.speed * np.tan(steering * params.max_steer) / params.wheelbase
    h = dt / substeps
    for _ in range(substeps):
        x += state.speed * np.cos(heading + yaw_rate * h / 2) * h
        y += state.speed * np.sin(heading + yaw_rate * h / 2) * h
        heading += yaw_rate * h
    return CarState(x, y, np.mod(heading + np.pi, 2 * np.pi) - np.pi, steering, state.speed.copy())
