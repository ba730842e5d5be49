"""``e2e-drive bench pipeline``: augmented images per second, ours against the usual recipe.

The baseline is the behavioural-cloning input pipeline found in most course
projects: a single-process Python generator that, for every sample, reads the
JPEG with ``cv2.imread`` and applies the augmentations one by one (brightness
and shadow through HSV/HLS conversions, noise in float64). It draws the same
augmentations with the same probabilities and ranges as
``default_augmentation()``. Ours: ``DrivingDataset`` over the decoded-frame
cache, read directly (one worker) and through Keras' own ``PyDataset``
machinery with worker threads and processes, exactly as ``model.fit`` reads it.
Repetitions are interleaved (the machine is shared) and the median is reported.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Sequence

import cv2
import numpy as np

from data_tools.augment import default_augmentation
from data_tools.log import DrivingLog


def load_log(paths: Sequence[str]) -> DrivingLog:
    """The logs to benchmark, read with ``data_tools.read_log``."""
    from data_tools.read import read_log

    return read_log(list(paths))


# --- the usual recipe -------------------------------------------------------------------------------

def naive_batches(log: DrivingLog, batch_size: int, rng: np.random.Generator, correction: float = 0.2):
    """The baseline generator: imread + augmentations one by one, per sample, in Python."""
    cameras = [c for c in ("center", "left", "right") if c in log.cameras]
    offsets = {"center": 0.0, "left": correction, "right": -correction}
    while True:
        images, angles = [], []
        for _ in range(batch_size):
            i = int(rng.integers(len(log)))
            camera = cameras[int(rng.integers(len(cameras)))]
            image = cv2.cvtColor(cv2.imread(log.images[camera][i]), cv2.COLOR_BGR2RGB)
            angle = float(log.steering[i]) + offsets[camera]
            if rng.random() < 0.5:
                image, angle = np.fliplr(image), -angle
            if rng.random() < 0.5:
                dx, dy = rng.uniform(-50, 50), rng.uniform(-10, 10)
                image = cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]),
                                       (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)
                angle += dx * 0.002
            if rng.random() < 0.3:
                image = _naive_shadow(image, rng)
            if rng.random() < 0.5:
                hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float64)
                hsv[:, :, 2] = np.clip(hsv[:, :, 2] * rng.uniform(0.5, 1.3), 0, 255)
                image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
            if rng.random() < 0.1:
                image = cv2.GaussianBlur(image, (5, 5), rng.uniform(0.3, 1.5))
            if rng.random() < 0.1:
                image = np.clip(image + rng.normal(0, rng.uniform(2, 8), image.shape), 0, 255).astype(np.uint8)
            images.append(image)
            angles.append(np.clip(angle, -1, 1))
        yield np.array(images), np.array(angles, np.float32)


def _naive_shadow(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    top_x, bottom_x = rng.uniform(0, width, size=2)
    hls = cv2.cvtColor(image, cv2.COLOR_RGB2HLS)
    ys, xs = np.mgrid[0:height, 0:width]
    mask = (xs - top_x) * height - (bottom_x - top_x) * ys >= 0
    if rng.random() < 0.5:
        mask = ~mask
    hls[:, :, 1][mask] = hls[:, :, 1][mask] * rng.uniform(0.4, 0.8)
    return cv2.cvtColor(hls, cv2.COLOR_HLS2RGB)


# --- measurement ------------------------------------------------------------------------------------

def _time_naive(log: DrivingLog, batch_size: int, n_batches: int, seed: int) -> float:
    generator = naive_batches(log, batch_size, np.random.default_rng(seed))
    start = time.perf_counter()
    for _ in range(n_batches):
        next(generator)
    return n_batches * batch_size / (time.perf_counter() - start)


def _time_direct(ds, first_epoch) -> float:
    start, images = time.perf_counter(), 0
    for k in range(len(ds)):
        frames, _ = ds.batch(first_epoch, k)
        images += len(frames)
    return images / (time.perf_counter() - start)


def _time_keras(ds) -> float:
    """Through Keras' PyDataset adapter, the path ``model.fit`` takes (pool start-up included, as in fit)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(ds, shuffle=False)
    start, images = time.perf_counter(), 0
    adapter.on_epoch_begin()
    for frames, _ in adapter.get_numpy_iterator():
        images += len(frames)
    adapter.on_epoch_end()
    return images / (time.perf_counter() - start)


def _model_train_rate(frames: np.ndarray, steering: np.ndarray, steps: int = 5) -> float | None:
    from e2e_drive.models import pilotnet

    model = pilotnet(input_shape=frames.shape[1:])
    model.compile(optimizer="adam", loss="mse")
    for _ in range(2):
        model.train_on_batch(frames, steering)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(frames, steering)
    return steps * len(frames) / (time.perf_counter() - start)


def run_pipeline_bench(
    paths: Sequence[str],
    *,
    batches: int = 40,
    batch_size: int = 64,
    workers: int = 2,
    repeats: int = 3,
    processes: bool = True,
    model: bool = True,
    seed: int = 0,
    log_fn=None,
) -> dict[str, Any]:
    """Measure augmented images per second: naive recipe vs ``DrivingDataset`` (1 worker, threads, processes).

    Args:
        paths: driving logs (folders or CSVs).
        batches: batches per measurement, one epoch (a smaller log is tiled to fill it). Defaults to `40`.
        batch_size: samples per batch. Defaults to `64`.
        workers: worker threads/processes of the parallel runs. Defaults to `2`.
        repeats: interleaved repetitions; the median is reported. Defaults to `3`.
        processes: also measure worker processes. Defaults to `True`.
        model: also measure PilotNet's in-memory training img/s (when ``e2e_drive.models`` exists). Defaults to `True`.
        seed: seed of every random choice. Defaults to `0`.
    """
    from data_tools.dataset import DrivingDataset

    say = log_fn or (lambda message: None)
    if batches < 1 or batch_size < 1 or workers < 1 or repeats < 1:
        raise ValueError(f"Expected batches, batch_size, workers, repeats >= 1. Received: "
                         f"batches={batches}, batch_size={batch_size}, workers={workers}, repeats={repeats}")
    log = load_log(paths)
    # One epoch of ``batches`` batches: a small log is tiled (its frames are cached once, rows repeat) so
    # Keras' fixed per-epoch cost of starting and draining its enqueuer (~0.1 s) weighs as on a real-size log.
    rows_needed = batches * batch_size
    tiled = log[np.resize(np.arange(len(log)), max(rows_needed, len(log)))]
    augment = default_augmentation()
    start = time.perf_counter()
    ds = DrivingDataset(tiled, batch_size, augment=augment, seed=seed, cache="memory")
    cache_seconds = time.perf_counter() - start
    configs = {"naive": [], "ours_1_worker": [], "ours_threads": []}
    if processes:
        configs["ours_processes"] = []

    threaded, multiproc = ds.with_workers(workers, False), ds.with_workers(workers, True)
    for r in range(repeats):
        say(f"repeat {r + 1}/{repeats}")
        configs["naive"].append(_time_naive(log, batch_size, batches, seed + r))
        configs["ours_1_worker"].append(_time_direct(ds, first_epoch=100 * r))
        threaded.set_epoch(100 * r)
        configs["ours_threads"].append(_time_keras(threaded))
        if processes:
            multiproc.set_epoch(100 * r)
            configs["ours_processes"].append(_time_keras(multiproc))
        say("  " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in configs.items()))
    rates = {k: statistics.median(v) for k, v in configs.items()}
    frames, steering = ds.batch(0, 0)
    model_rate = _model_train_rate(frames, steering) if model else None
    naive = rates["naive"]
    result: dict[str, Any] = {
        "paths": list(paths),
        "rows": len(log),
        "rows_per_epoch": len(tiled),
        "frames_cached": len(ds.cache),
        "frame_shape": list(ds.frame_shape),
        "cache_mb": round(ds.cache.nbytes / 2**20, 1),
        "cache_build_s": round(cache_seconds, 2),
        "batch_size": batch_size,
        "batches": batches,
        "workers": workers,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "img_per_s": {k: round(v, 1) for k, v in rates.items()},
        "img_per_s_runs": {k: [round(x, 1) for x in v] for k, v in configs.items()},
        "speedup_vs_naive": {k: round(v / naive, 2) for k, v in rates.items() if k != "naive"},
        "model_train_img_per_s": None if model_rate is None else round(model_rate, 1),
        "model_train_note": "PilotNet train_on_batch on one in-memory batch" if model_rate is not None
        else "n/a (e2e_drive.models.pilotnet not available)" if model else "n/a (not requested)",
    }
    return result


def format_result(result: dict[str, Any]) -> str:
    """The human-readable table."""
    lines = [
        f"log: {result['rows']} rows (tiled to {result['rows_per_epoch']} per epoch), {result['frames_cached']} frames {tuple(result['frame_shape'])} cached "
        f"({result['cache_mb']} MB in {result['cache_build_s']} s); batch {result['batch_size']}, "
        f"{result['workers']} workers, {result['cpu_count']} CPUs, median of {result['repeats']}",
        f"{'pipeline':<16}{'img/s':>10}{'vs naive':>10}",
    ]
    for name, rate in result["img_per_s"].items():
        ratio = "1.00x" if name == "naive" else f"{result['speedup_vs_naive'][name]:.2f}x"
        lines.append(f"{name:<16}{rate:>10.0f}{ratio:>10}")
    model_rate = result["model_train_img_per_s"]
    lines.append("PilotNet training (in memory): "
                 + (f"{model_rate:.0f} img/s" if model_rate is not None else result["model_train_note"]))
    return "\n".join(lines)
