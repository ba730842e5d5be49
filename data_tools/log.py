"""``DrivingLog``: the one in-memory table every reader returns.

A log is columnar: per-row image paths per camera, steering, throttle, speed,
and where each row came from (source file, row number, recording id). Rows are
in time order within a recording; ``split`` keeps that order because
consecutive frames are near-duplicates and a random split would leak.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from data_tools.log_formats import format_of_source

CAMERAS = ("center", "left", "right")
# The labels a model can learn from a log (columns of the same names), in the order of its heads.
TARGETS = ("steering", "throttle")


@dataclass(frozen=True)
class DrivingLog:
    """Driving data, one row per time step.

    Args:
        images: camera name (``center``, ``left``, ``right``) -> array of absolute
            image paths (dtype object); an empty string where a row has no such image.
        steering: steering in [-1, 1] (float32; positive = right, as in the Udacity logs).
        throttle: throttle (float32).
        speed: speed (float32; NaN where the log has none).
        timestamp: time of the frame in seconds (float64; NaN where the log has none). Udacity logs carry it
            in the image file names (``center_2016_12_01_13_30_48_287.jpg``), tubs in ``_timestamp_ms``.
        source: the file each row was read from (dtype object).
        row: where in ``source`` the row is: a CSV's data row (1-based, counted from the line after the
            header, so row 1 is the first data row with or without a header) or a tub record's ``_index``.
        recording: integer id of the recording each row belongs to; rows of one
            recording are consecutive and time-ordered.
        skipped: messages for rows left out with ``on_error="skip"``.
        deleted: records the source marked deleted (donkeycar tubs), left out.
    """

    images: dict[str, np.ndarray]
    steering: np.ndarray
    throttle: np.ndarray
    speed: np.ndarray
    source: np.ndarray
    row: np.ndarray
    recording: np.ndarray
    timestamp: np.ndarray | None = None
    skipped: tuple[str, ...] = field(default=())
    deleted: int = 0

    def __post_init__(self) -> None:
        n = len(self.steering)
        if self.timestamp is None:
            object.__setattr__(self, "timestamp", np.full(n, np.nan, np.float64))
        columns = {"timestamp": self.timestamp, "throttle": self.throttle, "speed": self.speed, "source": self.source,
                   "row": self.row, "recording": self.recording}
        columns.update({f"images[{k}]": v for k, v in self.images.items()})
        for name, column in columns.items():
            if len(column) != n:
                raise ValueError(f"DrivingLog column {name} has {len(column)} rows, steering has {n}")
        if "center" not in self.images:
            raise ValueError("DrivingLog needs a 'center' camera column")

    @classmethod
    def from_columns(
        cls,
        *,
        center: Sequence[str],
        steering: Sequence[float],
        source: str | Sequence[str],
        row: Sequence[int],
        left: Sequence[str] | None = None,
        right: Sequence[str] | None = None,
        throttle: Sequence[float] | None = None,
        speed: Sequence[float] | None = None,
        timestamp: Sequence[float] | None = None,
        recording: int | Sequence[int] = 0,
        skipped: Iterable[str] = (),
        deleted: int = 0,
    ) -> "DrivingLog":
        """Build a log from plain sequences (what readers call)."""
        n = len(steering)
        images = {"center": np.asarray(list(center), dtype=object)}
        for name, column in (("left", left), ("right", right)):
            if column is not None:
                images[name] = np.asarray(list(column), dtype=object)
        return cls(
            images=images,
            steering=np.asarray(steering, dtype=np.float32),
            throttle=np.zeros(n, np.float32) if throttle is None else np.asarray(throttle, np.float32),
            speed=np.full(n, np.nan, np.float32) if speed is None else np.asarray(speed, np.float32),
            timestamp=np.full(n, np.nan, np.float64) if timestamp is None else np.asarray(timestamp, np.float64),
            source=np.asarray([source] * n if isinstance(source, str) else list(source), dtype=object),
            row=np.asarray(row, dtype=np.int64),
            recording=np.full(n, recording, np.int32) if np.isscalar(recording) else np.asarray(recording, np.int32),
            skipped=tuple(skipped),
            deleted=int(deleted),
        )

    def __len__(self) -> int:
        return len(self.steering)

    @property
    def cameras(self) -> tuple[str, ...]:
        """Cameras with at least one image, in the order center, left, right."""
        return tuple(c for c in CAMERAS if c in self.images and any(self.images[c]))

    @property
    def recordings(self) -> np.ndarray:
        """The distinct recording ids, in order of appearance."""
        _, first = np.unique(self.recording, return_index=True)
        return self.recording[np.sort(first)]

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> "DrivingLog":
        """Rows by slice, integer array or boolean mask (an int gives a one-row log)."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype != bool:
                index = index.astype(np.int64)
        return replace(
            self,
            images={k: v[index] for k, v in self.images.items()},
            steering=self.steering[index],
            throttle=self.throttle[index],
            speed=self.speed[index],
            timestamp=self.timestamp[index],
            source=self.source[index],
            row=self.row[index],
            recording=self.recording[index],
        )

    def __add__(self, other: "DrivingLog") -> "DrivingLog":
        return DrivingLog.concat([self, other])

    @staticmethod
    def concat(logs: Sequence["DrivingLog"]) -> "DrivingLog":
        """Join logs end to end; recording ids are renumbered so they stay distinct."""
        logs = [log for log in logs]
        if not logs:
            raise ValueError("DrivingLog.concat needs at least one log")
        cameras = [c for c in CAMERAS if any(c in log.images for log in logs)]
        recordings, offset = [], 0
        for log in logs:
            if len(log):
                ids = np.unique(log.recording, return_inverse=True)[1].astype(np.int32)
                recordings.append(ids + offset)
                offset += int(ids.max()) + 1
            else:
                recordings.append(np.zeros(0, np.int32))

        def column(log: DrivingLog, camera: str) -> np.ndarray:
            return log.images.get(camera, np.full(len(log), "", dtype=object))

        return DrivingLog(
            images={c: np.concatenate([column(log, c) for log in logs]) for c in cameras},
            steering=np.concatenate([log.steering for log in logs]),
            throttle=np.concatenate([log.throttle for log in logs]),
            speed=np.concatenate([log.speed for log in logs]),
            timestamp=np.concatenate([log.timestamp for log in logs]),
            source=np.concatenate([log.source for log in logs]),
            row=np.concatenate([log.row for log in logs]),
            recording=np.concatenate(recordings),
            skipped=tuple(m for log in logs for m in log.skipped),
            deleted=sum(log.deleted for log in logs),
        )

    def with_steering(self, steering: np.ndarray) -> "DrivingLog":
        """The same rows with other steering labels (smoothing, corrections)."""
        steering = np.asarray(steering, np.float32)
        if steering.shape != self.steering.shape:
            raise ValueError(f"expected {self.steering.shape} steering values, got {steering.shape}")
        return replace(self, steering=steering)

    def split(self, val_fraction: float) -> tuple["DrivingLog", "DrivingLog"]:
        """Time-ordered train/validation split: the rows outside and inside ``validation_rows(val_fraction)``."""
        is_val = self.validation_rows(val_fraction)
        return self[~is_val], self[is_val]

    def validation_rows(self, val_fraction: float) -> np.ndarray:
        """The boolean mask of the validation rows: the last ``val_fraction`` of every recording.

        Both parts see every recording, but no validation frame has a near-duplicate neighbour in training
        (apart from the one frame at the boundary). The mask depends only on the recordings' lengths, so it
        splits a relabelled copy of the log (smoothed steering) the same way.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"Expected 0 <= val_fraction < 1. Received: val_fraction={val_fraction}")
        is_val = np.zeros(len(self), bool)
        for recording in self.recordings:
            rows = np.flatnonzero(self.recording == recording)
            n_val = int(round(len(rows) * val_fraction))
            if n_val:
                is_val[rows[-n_val:]] = True
        return is_val

    def describe(self, i: int) -> str:
        """Where row ``i`` came from, for messages: ``"driving_log.csv, row 3"``, ``"catalog_0.catalog, record 7"``."""
        source = str(self.source[i])
        log_format = format_of_source(source)
        return f"{source}, {log_format.record if log_format else 'row'} {int(self.row[i])}"
