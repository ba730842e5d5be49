"""``e2e-drive bench train``: training throughput, all figures relative to a baseline of the same run.

1. Input pipeline, with the default training recipe's augmentation (``recipe_augmentation``: side cameras,
   viewpoint-shift warps, flips, light): (a) the augmentation chain alone, batches made back to back by 1 and by
   ``os.cpu_count()`` threads; (b) PilotNet's step on in-memory tensors (the same frames as one NumPy array);
   (c) ``fit`` fed by ``DrivingDataset`` (memory cache) with the default ``--workers`` and with one worker per
   core: images/s of each and (c) / (b) (target >= 90 %); and the viewpoint-shift warp alone, of the whole frame
   against the rows the model's crop sees (what the recipe warps).
2. Variants: train-step time of every activation/conv variant relative to ELU +
   Keras conv, on the same batch.

Synthetic 160x320 frames (the Udacity size) are written as JPEGs to a
temporary folder, so the dataset decodes and caches real files.
"""

from __future__ import annotations

import logging
import os
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


def _sim_frame() -> np.ndarray:
    from e2e_drive.replay import get_profile
    from e2e_drive.sim import Camera, make_track

    track = make_track(0)
    return Camera(track, get_profile("udacity").camera).render(*track.centre[20], track.heading[20])


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


def _augment_seconds(dataset, threads: int) -> float:
    """Seconds to make one epoch's batches (decode from the cache, augment) with ``threads`` threads, no model."""
    from concurrent.futures import ThreadPoolExecutor

    dataset.batch(0, 0)  # the cache is filled on first use: not timed
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: dataset.batch(1, i), range(len(dataset))))
    return time.perf_counter() - start


def shift_warp_rates(frame: np.ndarray, warps: int = 200) -> dict[str, float]:
    """Viewpoint-shift warps per second of the whole frame and of the rows the default crop lets the model see
    (``e2e_drive.recipe.seen_rows``), interleaved on the same frame and displacements."""
    from data_tools.augment import default_augmentation
    from e2e_drive.recipe import row_margin, seen_rows
    from e2e_drive.replay import ViewWarp, get_profile

    warp = ViewWarp(get_profile("udacity").camera)
    rows = seen_rows(frame.shape[0], None, row_margin(default_augmentation()))
    moves = np.random.default_rng(0).uniform(-1.0, 1.0, (warps, 2)) * (1.35, 0.1)
    seconds = {"whole_frame": 0.0, "seen_rows": 0.0}
    for lateral, heading in moves:
        for name, kept in (("whole_frame", None), ("seen_rows", rows)):
            start = time.perf_counter()
            warp(frame, lateral, heading, rows=kept)
            seconds[name] += time.perf_counter() - start
    rates = {name: warps / value for name, value in seconds.items()}
    rates["seen_rows_vs_whole_frame"] = rates["seen_rows"] / rates["whole_frame"]
    rates["rows"] = list(rows)
    return rates


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
    from data_tools.progress import progress
    from e2e_drive.heap_padding import pad_the_heap
    from e2e_drive.models import ACTIVATIONS
    from e2e_drive.recipe import recipe_augmentation
    from e2e_drive.train import batch_workers
    from e2e_drive.train_config import TrainConfig

    pad_the_heap()  # as train() runs
    keras.utils.set_random_seed(0)
    n = batch_size * steps
    report: dict[str, Any] = {"batch_size": batch_size, "steps": steps, "frame_shape": list(FRAME_SHAPE)}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as folder:
        log.info("writing %d x 3 synthetic %dx%d JPEG frames", n, FRAME_SHAPE[1], FRAME_SHAPE[0])
        driving_log = _synthetic_log(Path(folder), n)
        defaults = TrainConfig(car="udacity")
        augment = recipe_augmentation(defaults, driving_log)

        def dataset(workers: int) -> DrivingDataset:
            return DrivingDataset(driving_log, batch_size, augment=augment, cache="memory", seed=0,
                                  drop_remainder=True, progress=False, workers=workers)

        cores = os.cpu_count() or 1
        default_workers, _ = batch_workers(defaults.workers)
        log.info("timing: the recipe's augmentation alone (1 and %d threads)", cores)
        batches = dataset(1)  # one frame cache for every thread count
        chain = {str(k): n / _augment_seconds(batches, k) for k in sorted({1, cores})}
        frames = np.stack([read_frame(path) for path in driving_log.images["center"]])
        log.info("timing: viewpoint-shift warps, whole frame vs the rows the model sees")
        warp_rates = shift_warp_rates(_sim_frame())
        steering = driving_log.steering
        log.info("timing: in-memory tensors")
        tensor_s = epoch_seconds(_compiled(), frames, epochs, y=steering, batch_size=batch_size, shuffle=True)
        fed = {}
        for workers in sorted({default_workers, cores}):
            log.info("timing: DrivingDataset (memory cache, recipe augmentation, %d workers)", workers)
            fed[str(workers)] = n / epoch_seconds(_compiled(), dataset(workers), epochs)
    tensors = n / tensor_s
    report["input_pipeline"] = {
        "augmentation": "recipe_augmentation (udacity car, viewpoint shifts)",
        "augment_images_per_s_by_threads": chain,
        "tensors_images_per_s": tensors,
        "dataset_images_per_s_by_workers": fed,
        "default_workers": default_workers,
        "dataset_images_per_s": fed[str(default_workers)],
        "dataset_vs_tensors": fed[str(default_workers)] / tensors,
        "target": 0.9,
        "shift_warps_per_s": warp_rates,
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
        f"augmentation alone ({pipe['augmentation']}): "
        + ", ".join(f"{rate:.1f} images/s with {k} thread(s)" for k, rate in
                    pipe["augment_images_per_s_by_threads"].items()),
        f"in-memory tensors : {pipe['tensors_images_per_s']:8.1f} images/s",
        *(f"DrivingDataset    : {rate:8.1f} images/s with {k} worker(s)  "
          f"({100 * rate / pipe['tensors_images_per_s']:.0f} % of tensors; target {100 * pipe['target']:.0f} %)"
          + ("  <- default --workers" if int(k) == pipe["default_workers"] else "")
          for k, rate in pipe["dataset_images_per_s_by_workers"].items()),
        f"viewpoint-shift warps: {pipe['shift_warps_per_s']['whole_frame']:.0f}/s whole frame, "
        f"{pipe['shift_warps_per_s']['seen_rows']:.0f}/s rows {pipe['shift_warps_per_s']['rows']} the model sees "
        f"(x{pipe['shift_warps_per_s']['seen_rows_vs_whole_frame']:.2f})",
        "train step by variant (relative to elu:keras):",
    ]
    for name, entry in report["variants"].items():
        lines.append(f"  {name:<16} {entry['step_ms']:8.1f} ms  x{entry['relative_to_elu_keras']:.2f}")
    return "\n".join(lines)
