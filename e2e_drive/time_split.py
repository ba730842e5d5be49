"""Where a training run's wall time went: reading the data, decoding the frames, the epochs' optimizer steps,
validation, the end of each epoch (selection, checkpoints, logs) and the closed-loop check of ``best.keras``.

``TimeSplit`` times the parts of one ``train`` call: ``part(name)`` around a stretch of code, and a pair of
Keras callbacks placed first and last in fit's list for the parts inside the epochs. The batch makers run
beside the steps (tf.data's prefetch thread or the dataset's workers), so their busy time is reported next to
the split, not inside it: when they are busy nearly all of the steps' time, the steps waited for them.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

# In the order a run goes through them; "other" is what none of them covers (building the model, the lock).
PARTS = ("read", "decode", "steps", "validation", "epoch_end", "closed_loop", "other")


class TimeSplit:
    """The seconds of each part of one training call (``PARTS``); ``to_dict`` closes it."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.batch_seconds: float | None = 0.0  # the batch makers' busy time, summed over workers
        self.batch_workers = 1
        self._epoch_start: float | None = None
        self._test_start: float | None = None
        self._end_start: float | None = None

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += float(seconds)

    def callbacks(self) -> tuple[Any, Any]:
        """``(first, last)``: Keras callbacks to put first and last in fit's list. Fit calls, per epoch,
        ``on_epoch_begin``, the steps, ``on_test_begin``/``on_test_end`` around validation, then every
        callback's ``on_epoch_end`` in list order: the first's marks the start of the epoch's end, the last's its
        end."""
        import keras

        split = self

        class First(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                split._epoch_start, split._test_start = time.perf_counter(), None

            def on_test_begin(self, logs=None):
                split._test_start = time.perf_counter()
                if split._epoch_start is not None:
                    split.seconds["steps"] += split._test_start - split._epoch_start

            def on_test_end(self, logs=None):
                if split._test_start is not None:
                    split.seconds["validation"] += time.perf_counter() - split._test_start

            def on_epoch_end(self, epoch, logs=None):
                now = time.perf_counter()
                if split._test_start is None and split._epoch_start is not None:  # an epoch without validation
                    split.seconds["steps"] += now - split._epoch_start
                split._end_start = now

        class Last(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if split._end_start is not None:
                    split.seconds["epoch_end"] += time.perf_counter() - split._end_start

        return First(), Last()

    def to_dict(self) -> dict[str, Any]:
        """``{"total_seconds", "seconds": {part: s}, "batch_seconds", "batch_workers", "batch_busy"}``; ``batch_busy`` is the batch makers' busy time over
        ``batch_workers`` x the steps' time (near 1: the steps waited for batches), ``None`` when unknown (worker
        processes keep their own clocks)."""
        total = time.perf_counter() - self.started
        seconds = dict(self.seconds)
        seconds["other"] = max(0.0, total - sum(v for k, v in seconds.items() if k != "other"))
        busy = None
        if self.batch_seconds is not None and seconds["steps"] > 0:
            busy = self.batch_seconds / (self.batch_workers * seconds["steps"])
        return {
            "total_seconds": total,
            "seconds": seconds,
            "batch_seconds": self.batch_seconds,
            "batch_workers": self.batch_workers,
            "batch_busy": busy,
        }


def format_time_split(split: dict[str, Any]) -> str:
    """The split in one line for people: each part that took time, then how busy the batch makers were."""
    seconds = split["seconds"]
    parts = ", ".join(f"{name.replace('_', ' ')} {seconds[name]:.1f} s" for name in PARTS if seconds[name] >= 0.05)
    if split["batch_busy"] is None:
        busy = "; batch makers' busy time unknown (worker processes)"
    else:
        busy = (f"; batch makers busy {100 * split['batch_busy']:.0f}% of the steps' time"
                + (": the steps waited for batches" if split["batch_busy"] > 0.9 else ""))
    return f"wall time {split['total_seconds']:.1f} s: {parts}{busy}"
