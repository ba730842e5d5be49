"""``e2e-drive bench train``: training throughput, all figures relative to a baseline of the same run.

1. Input pipeline: PilotNet trained from ``DrivingDataset`` (memory cache +
   default augmentation) vs from in-memory tensors (the same frames as one
   NumPy array): images/s of each and their ratio (target >= 90 %).
2. Variants: train-step time of every activation/conv variant relative to ELU +
   Keras conv, on the same batch.

Synthetic 160x320 frames (the Udacity size) are written as JPEGs to a
temporary folder, so the dataset decodes and caches real files.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FRAME_SHAPE = (160, 320, 3)

log = logging.getLogger(__name__)


def _synthetic_log(folder: Path, n: int, seed: int = 0):
    from data_tools.frames import write_frame
    from data_tools.log import DrivingLog

    rng = np.random.default_rng(seed)
    columns: dict[str, list[str]] = {"center": [], "left": [], "right": []}
    for i in range(n):
        for camera in columns:
            path = folder / f"{camera}_{i:05d}.jpg"
            write_frame(path, rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8))
            columns[camera].append(str(path))
    return DrivingLog.from_columns(**columns, steering=rng.uniform(-0.5, 0.5, n), source=str(folder / "log.csv"),
                                   row=np.arange(1, n + 1))


def epoch_seconds(model, data, epochs: int, **fit_kwargs) -> float:
    """Seconds of the last epoch of ``model.fit`` (the first one includes tracing)."""
    import keras

    marks: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            marks.append(time.perf_counter())

    model.fit(data, epochs=epochs, verbose=0, callbacks=[Timer()], **fit_kwargs)
    return marks[-1] - marks[-2]


def _compiled(activation: str = "elu", conv: str = "keras"):
    import keras

    from e2e_drive.models import pilotnet

    model = pilotnet(FRAME_SHAPE, activation=activation, conv=conv, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
    return model


def bench_train(batch_size: int = 32, steps: int = 10, variants: str = "all", epochs: int = 2) -> dict[str, Any]:
    """Run both benchmarks; return the figures (see the module docstring)."""
    import keras

    from data_tools import DrivingDataset, read_frame
    from data_tools.augment import default_augmentation
    from data_tools.progress import progress
    from e2e_drive.models import ACTIVATIONS

    keras.utils.set_random_seed(0)
    n = batch_size * steps
    report: dict[str, Any] = {"batch_size": batch_size, "steps": steps, "frame_shape": list(FRAME_SHAPE)}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as folder:
        log.info("writing %d x 3 synthetic %dx%d JPEG frames", n, FRAME_SHAPE[1], FRAME_SHAPE[0])
        driving_log = _synthetic_log(Path(folder), n)
        dataset = DrivingDataset(driving_log, batch_size, augment=default_augmentation(), cache="memory", seed=0,
                                 drop_remainder=True, progress=False)
        frames = np.stack([read_frame(path) for path in driving_log.images["center"]])
        steering = driving_log.steering
        log.info("timing: in-memory tensors")
        tensor_s = epoch_seconds(_compiled(), frames, epochs, y=steering, batch_size=batch_size, shuffle=True)
        log.info("timing: DrivingDataset (memory cache, default augmentation)")
        dataset_s = epoch_seconds(_compiled(), dataset, epochs)
    report["input_pipeline"] = {
        "tensors_images_per_s": n / tensor_s,
        "dataset_images_per_s": n / dataset_s,
        "dataset_vs_tensors": tensor_s / dataset_s,
        "target": 0.9,
    }

    chosen = [(a, "keras") for a in ACTIVATIONS] + [("elu", "reference")]
    if variants != "all":
        chosen = [(v.split(":")[0], v.split(":")[1] if ":" in v else "keras") for v in variants.split(",")]
        if ("elu", "keras") not in chosen:
            chosen.insert(0, ("elu", "keras"))
    batch = (frames[:batch_size], steering[:batch_size])
    timings: dict[str, float] = {}
    for activation, conv in progress(chosen, label="variants"):
        model = _compiled(activation, conv)
        model.train_on_batch(*batch)  # trace + build the optimizer
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(*batch)
        timings[f"{activation}:{conv}"] = (time.perf_counter() - start) / steps
    baseline = timings["elu:keras"]
    report["variants"] = {name: {"step_ms": 1000 * seconds, "relative_to_elu_keras": seconds / baseline}
                          for name, seconds in timings.items()}
    return report


def format_train_report(report: dict[str, Any]) -> str:
    pipe = report["input_pipeline"]
    lines = [
        f"batch {report['batch_size']}, frames {report['frame_shape'][1]}x{report['frame_shape'][0]}",
        f"in-memory tensors : {pipe['tensors_images_per_s']:8.1f} images/s",
        f"DrivingDataset    : {pipe['dataset_images_per_s']:8.1f} images/s  "
        f"({100 * pipe['dataset_vs_tensors']:.0f} % of tensors; target {100 * pipe['target']:.0f} %)",
        "train step by variant (relative to elu:keras):",
    ]
    for name, entry in report["variants"].items():
        lines.append(f"  {name:<16} {entry['step_ms']:8.1f} ms  x{entry['relative_to_elu_keras']:.2f}")
    return "\n".join(lines)
