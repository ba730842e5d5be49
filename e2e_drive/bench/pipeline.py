"""``e2e-drive bench pipeline``: augmented images per second, ours against the usual recipe.

The baseline is the behavioural-cloning input pipeline of most course projects (for example
naokishibuya/car-behavioral-cloning's ``batch_generator``): a single-process Python generator that, for every
sample, reads the JPEG with ``cv2.imread``, picks a camera (steering corrected by 0.2), and with probability
0.6 augments it step by step with OpenCV and NumPy: flip, translate, a random shadow and a brightness change
in HSV. Ours: ``DrivingDataset`` with ``default_augmentation()`` over its decoded-frame cache, read directly
(one worker) and through Keras' own ``PyDataset`` machinery with worker threads and processes, exactly as
``model.fit`` reads it. Repetitions are interleaved (the machine is shared) and the median is reported.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from typing import Any, Sequence

import cv2
import numpy as np

from data_tools import DrivingLog, load_log

log = logging.getLogger(__name__)

# --- the usual recipe -------------------------------------------------------------------------------

CAMERA_CORRECTION = 0.2  # steering added for the left camera, subtracted for the right


def naive_batches(driving_log: DrivingLog, batch_size: int, rng: np.random.Generator, augment_share: float = 0.6):
    """The baseline generator: ``cv2.imread`` and the augmentation steps one by one, per sample, in Python."""
    cameras = [c for c in ("center", "left", "right") if c in driving_log.cameras]
    offsets = {"center": 0.0, "left": CAMERA_CORRECTION, "right": -CAMERA_CORRECTION}
    while True:
        images, angles = [], []
        for _ in range(batch_size):
            i = int(rng.integers(len(driving_log)))
            augmented = rng.random() < augment_share
            camera = cameras[int(rng.integers(len(cameras)))] if augmented else "center"
            image = cv2.cvtColor(cv2.imread(driving_log.images[camera][i]), cv2.COLOR_BGR2RGB)
            angle = float(driving_log.steering[i]) + offsets[camera]
            if augmented:
                image, angle = _usual_augmentation(image, angle, rng)
            images.append(image)
            angles.append(angle)
        yield np.array(images), np.array(angles, np.float32)


def _usual_augmentation(image: np.ndarray, angle: float, rng: np.random.Generator,
                        range_x: float = 100, range_y: float = 10) -> tuple[np.ndarray, float]:
    """Flip, translate, shadow, brightness: the course-project recipe, straight OpenCV calls."""
    if rng.random() < 0.5:
        image, angle = cv2.flip(image, 1), -angle
    shift_x, shift_y = range_x * (rng.random() - 0.5), range_y * (rng.random() - 0.5)
    image = cv2.warpAffine(image, np.float32([[1, 0, shift_x], [0, 1, shift_y]]), (image.shape[1], image.shape[0]))
    angle += shift_x * 0.002
    height, width = image.shape[:2]
    (x1, x2), ys, xs = width * rng.random(2), *np.mgrid[0:height, 0:width]
    shadow = (xs - x1) * height - (x2 - x1) * ys > 0
    shadow = shadow if rng.random() < 0.5 else ~shadow
    hls = cv2.cvtColor(image, cv2.COLOR_RGB2HLS)
    hls[:, :, 1][shadow] = hls[:, :, 1][shadow] * rng.uniform(0.2, 0.5)
    hsv = cv2.cvtColor(cv2.cvtColor(hls, cv2.COLOR_HLS2RGB), cv2.COLOR_RGB2HSV).astype(np.float64)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] * (1.0 + 0.4 * (rng.random() - 0.5)), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB), angle


# --- measurement ------------------------------------------------------------------------------------

def _time_naive(driving_log: DrivingLog, batch_size: int, n_batches: int, seed: int) -> float:
    generator = naive_batches(driving_log, batch_size, np.random.default_rng(seed))
    start = time.perf_counter()
    for _ in range(n_batches):
        next(generator)
    return n_batches * batch_size / (time.perf_counter() - start)


def _time_direct(dataset, first_epoch: int) -> float:
    start, images = time.perf_counter(), 0
    for k in range(len(dataset)):
        frames, _ = dataset.batch(first_epoch, k)
        images += len(frames)
    return images / (time.perf_counter() - start)


def _time_keras(dataset) -> float:
    """Through Keras' PyDataset adapter, the path ``model.fit`` takes (pool start-up included, as in fit)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(dataset, shuffle=False)
    start, images = time.perf_counter(), 0
    adapter.on_epoch_begin()
    for frames, _ in adapter.get_numpy_iterator():
        images += len(frames)
    adapter.on_epoch_end()
    return images / (time.perf_counter() - start)


def _model_train_rate(frames: np.ndarray, steering: np.ndarray, steps: int = 5) -> float:
    from e2e_drive.models import pilotnet

    model = pilotnet(input_shape=frames.shape[1:])
    model.compile(optimizer="adam", loss="mse")
    for _ in range(2):
        model.train_on_batch(frames, steering)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(frames, steering)
    return steps * len(frames) / (time.perf_counter() - start)


def bench_pipeline(
    paths: Sequence[str] | DrivingLog,
    *,
    batches: int = 40,
    batch_size: int = 64,
    workers: int = 2,
    repeats: int = 3,
    processes: bool = True,
    model: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure augmented images per second: the usual recipe vs ``DrivingDataset`` (1 worker, threads, processes).

    Args:
        paths: driving logs (folders, CSVs, tubs) or a ``DrivingLog``.
        batches: batches per measurement, one epoch (a smaller log is tiled to fill it). Defaults to `40`.
        batch_size: samples per batch. Defaults to `64`.
        workers: worker threads/processes of the parallel runs. Defaults to `2`.
        repeats: interleaved repetitions; the median is reported. Defaults to `3`.
        processes: also measure worker processes. Defaults to `True`.
        model: also measure PilotNet's in-memory training img/s. Defaults to `True`.
        seed: seed of every random choice. Defaults to `0`.
    """
    from data_tools import DrivingDataset
    from data_tools.augment import default_augmentation

    if batches < 1 or batch_size < 1 or workers < 1 or repeats < 1:
        raise ValueError(f"Expected batches, batch_size, workers, repeats >= 1. Received: "
                         f"batches={batches}, batch_size={batch_size}, workers={workers}, repeats={repeats}")
    driving_log = load_log(paths)
    # One epoch of ``batches`` batches: a small log is tiled (its frames are cached once, rows repeat) so
    # Keras' fixed per-epoch cost of starting and draining its enqueuer (~0.1 s) weighs as on a real-size log.
    rows_needed = batches * batch_size
    tiled = driving_log[np.resize(np.arange(len(driving_log)), max(rows_needed, len(driving_log)))]

    def dataset(use_multiprocessing: bool):
        return DrivingDataset(tiled, batch_size, augment=default_augmentation(), seed=seed, cache="memory",
                              workers=workers, use_multiprocessing=use_multiprocessing)

    start = time.perf_counter()
    threaded = dataset(False)  # read directly, it is the 1-worker measurement
    cache_seconds = time.perf_counter() - start
    multiprocess = dataset(True) if processes else None
    runs: dict[str, list[float]] = {"naive": [], "ours_1_worker": [], "ours_threads": []}
    if processes:
        runs["ours_processes"] = []
    for r in range(repeats):
        runs["naive"].append(_time_naive(driving_log, batch_size, batches, seed + r))
        runs["ours_1_worker"].append(_time_direct(threaded, first_epoch=100 * r))
        threaded.set_epoch(100 * r)
        runs["ours_threads"].append(_time_keras(threaded))
        if multiprocess is not None:
            multiprocess.set_epoch(100 * r)
            runs["ours_processes"].append(_time_keras(multiprocess))
        log.info("repeat %d/%d: %s", r + 1, repeats, ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in runs.items()))
    rates = {k: statistics.median(v) for k, v in runs.items()}
    model_rate = _model_train_rate(*threaded.batch(0, 0)) if model else None
    naive = rates["naive"]
    cache = threaded.cache
    return {
        "paths": [str(p) for p in paths] if not isinstance(paths, DrivingLog) else sorted(set(map(str, paths.source))),
        "rows": len(driving_log),
        "rows_per_epoch": len(tiled),
        "frames_cached": len(cache) if cache is not None else 0,
        "frame_shape": list(threaded.frame_shape),
        "cache_mb": round(cache.nbytes / 2**20, 1) if cache is not None else 0.0,
        "cache_build_s": round(cache_seconds, 2),
        "batch_size": batch_size,
        "batches": batches,
        "workers": workers,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "img_per_s": {k: round(v, 1) for k, v in rates.items()},
        "img_per_s_runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "speedup_vs_naive": {k: round(v / naive, 2) for k, v in rates.items() if k != "naive"},
        "model_train_img_per_s": None if model_rate is None else round(model_rate, 1),
        "model_train_note": "PilotNet train_on_batch on one in-memory batch" if model_rate is not None
        else "n/a (not requested)",
    }


def format_pipeline_report(report: dict[str, Any]) -> str:
    """The human-readable table."""
    lines = [
        f"log: {report['rows']} rows (tiled to {report['rows_per_epoch']} per epoch), {report['frames_cached']} "
        f"frames {tuple(report['frame_shape'])} cached ({report['cache_mb']} MB in {report['cache_build_s']} s); "
        f"batch {report['batch_size']}, {report['workers']} workers, {report['cpu_count']} CPUs, "
        f"median of {report['repeats']}",
        f"{'pipeline':<16}{'img/s':>10}{'vs naive':>10}",
    ]
    for name, rate in report["img_per_s"].items():
        ratio = "1.00x" if name == "naive" else f"{report['speedup_vs_naive'][name]:.2f}x"
        lines.append(f"{name:<16}{rate:>10.0f}{ratio:>10}")
    model_rate = report["model_train_img_per_s"]
    lines.append("PilotNet training (in memory): "
                 + (f"{model_rate:.0f} img/s" if model_rate is not None else report["model_train_note"]))
    return "\n".join(lines)
