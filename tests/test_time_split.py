"""Where a training run's wall time went: each part finds the delay a test puts into it, the parts add up to the
call's wall time, and the CLI and time_split.json carry the same split."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.builders import CROP, synthetic_log

STEP_DELAY, EPOCH_END_DELAY, SAMPLE_DELAY = 0.15, 0.4, 0.004


class SlowAugment:
    """An augmentation that returns the sample unchanged after a known delay."""

    chooses_camera = False

    def __call__(self, sample, rng):
        time.sleep(SAMPLE_DELAY)
        return sample

    def __repr__(self) -> str:
        return "SlowAugment()"


def test_each_part_of_the_split_holds_the_delay_put_into_it(tmp_path):
    import keras

    from e2e_drive.train import train

    class SlowCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(STEP_DELAY)

        def on_epoch_end(self, epoch, logs=None):
            time.sleep(EPOCH_END_DELAY)

    log = synthetic_log(tmp_path / "frames")
    epochs, batch = 2, 16
    started = time.perf_counter()
    result = train(log, tmp_path / "run", epochs=epochs, batch_size=batch, crop=CROP, verbose=0, early_stopping=0,
                   augment=SlowAugment(), callbacks=[SlowCallback()], cache="memory")
    outside = time.perf_counter() - started
    split = result.time_split
    seconds = split["seconds"]
    steps = epochs * -(-result.num_train // batch)

    # The oracle: the delays the test put in, and the clock around the call.
    assert seconds["steps"] >= steps * STEP_DELAY
    assert seconds["epoch_end"] >= epochs * EPOCH_END_DELAY
    # fit's steps ran beside the batch makers, which slept for every training sample they augmented.
    assert split["batch_seconds"] >= epochs * result.num_train * SAMPLE_DELAY
    assert split["batch_workers"] == 1 and 0 < split["batch_busy"] <= 1.0
    assert seconds["validation"] > 0 and seconds["decode"] > 0 and seconds["read"] > 0
    assert seconds["closed_loop"] == 0  # the synthetic log has no recorded path to drive (test_recipe times one)
    assert all(v >= 0 for v in seconds.values())
    assert sum(seconds.values()) == pytest.approx(split["total_seconds"], rel=1e-9)
    assert split["total_seconds"] <= outside
    assert json.loads((Path(result.run_dir) / "time_split.json").read_text()) == json.loads(json.dumps(split))


def test_the_line_lists_each_part_that_took_time_and_says_when_the_steps_waited():
    from e2e_drive.time_split import PARTS, format_time_split

    seconds = {**dict.fromkeys(PARTS, 1.25), "closed_loop": 0.0}
    split = {"total_seconds": 7.5, "seconds": seconds, "batch_seconds": 9.5, "batch_workers": 1, "batch_busy": 0.95}
    text = format_time_split(split)
    assert text.startswith("wall time 7.5 s: read 1.2 s, decode 1.2 s, steps 1.2 s, validation 1.2 s, epoch end 1.2 s")
    assert "closed loop" not in text and "other 1.2 s" in text  # a part that took no time is left out
    assert text.endswith("batch makers busy 95% of the steps' time: the steps waited for batches")
    assert "waited" not in format_time_split({**split, "batch_busy": 0.5})
    assert "unknown" in format_time_split({**split, "batch_busy": None, "batch_seconds": None})
