"""``DrivingDataset``: batches of raw frames and steering (and throttle) for ``model.fit``.

Batches are ``(frames uint8 (B, H, W, 3) raw RGB, steering float32 (B,))``, or with
``targets=("steering", "throttle")`` ``(frames, {"steering": (B,), "throttle": (B,)})``
(the labels of a two-output ``pilotnet``); preprocessing happens inside the model
(``FramePreprocess``). Augmentations change the steering only: the throttle is the log's. Every random
choice of batch ``index`` in epoch ``epoch`` comes from
``np.random.default_rng([seed, epoch, 1, index])`` and the epoch's order from
``[seed, epoch, 0]``: a batch is a pure function of ``(seed, epoch, index)``,
so one seed gives the same batches with any number of worker threads or
processes, and through ``to_tf_dataset``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

import keras
import numpy as np

from data_tools.augment import Sample, Transform
from data_tools.errors import DataError
from data_tools.frame_cache import CACHE_MODES, FrameCache, choose_cache_mode, default_cache_dir
from data_tools.frames import read_frame
from data_tools.log import TARGETS, DrivingLog
from data_tools.shared_batches import SharedBatchSlots, exempt_inherited_objects_from_gc

logger = logging.getLogger(__name__)

def check_targets(targets) -> tuple[str, ...]:
    """``targets`` as a tuple: a non-empty subset of ``TARGETS``, each once, steering first; else ValueError."""
    if isinstance(targets, str):
        targets = tuple(t.strip() for t in targets.split(","))
    targets = tuple(targets)
    if (not targets or targets[0] != "steering" or len(set(targets)) != len(targets)
            or any(t not in TARGETS for t in targets)):
        raise ValueError(f"Expected targets from {', '.join(TARGETS)}, each once, steering first. "
                         f"Received: targets={targets}")
    return targets


class DrivingDataset(keras.utils.PyDataset):
    """A Keras ``PyDataset`` over a ``DrivingLog``, optionally augmented.

    Args:
        log: the rows to serve.
        batch_size: samples per batch. Defaults to `64`.
        augment: a transform (e.g. ``default_augmentation()``) applied to each
            sample, or ``None`` for the centre frames as they are. Defaults to `None`.
        shuffle: a new order every epoch (derived from ``(seed, epoch)``). Defaults to `True`.
        seed: the one seed of every random choice. Defaults to `0`.
        cache: ``"memory"``, ``"disk"`` (``np.memmap`` under ``cache_dir``), ``"auto"`` (memory when the
            decoded frames take less than half the available memory, else disk; the choice is logged) or
            ``"none"``/``None`` (decode every frame when it is used). Defaults to `"memory"`.
        cache_dir: folder of the disk cache. Defaults to ``data_tools.frame_cache.default_cache_dir()``.
        memory_budget: bytes ``cache="auto"`` may keep in memory. Defaults to half the available memory.
        workers, use_multiprocessing, max_queue_size: passed to ``keras.utils.PyDataset``.
        drop_remainder: leave out the last, smaller batch. Defaults to `False`.
        targets: the labels of a batch, steering first. ``("steering",)``: ``(frames, steering)`` batches;
            ``("steering", "throttle")``: ``(frames, {"steering": s, "throttle": t})`` with the throttle of
            ``log.throttle``, untouched by the augmentations. Defaults to `("steering",)`.
        repeat: serve every row this many times per epoch (each time freshly augmented, in one shuffled
            order), so that a small log still gives an epoch enough optimizer steps. Defaults to `1`.

    Example:
        >>> ds = DrivingDataset(log, 64, augment=default_augmentation(), workers=2)
        >>> frames, steering = ds[0]     # (64, 160, 320, 3) uint8, (64,) float32
        >>> frames, labels = DrivingDataset(log, 64, targets=("steering", "throttle"))[0]   # labels: a dict
        >>> model.fit(ds, epochs=10, shuffle=False)   # ds shuffles itself, from the seed

    With ``use_multiprocessing=True`` the worker processes hand batches back
    through shared memory (``data_tools.shared_batches``), not through a pipe.
    Pass ``shuffle=False`` to ``fit``: its own shuffle reorders the batches with
    Python's unseeded global ``random``.
    """

    def __init__(
        self,
        log: DrivingLog,
        batch_size: int = 64,
        *,
        augment: Transform | Callable[[Sample, np.random.Generator], Sample] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        cache: str | None = "memory",
        cache_dir: str | os.PathLike | None = None,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        drop_remainder: bool = False,
        progress: bool = True,
        memory_budget: int | None = None,
        targets: tuple[str, ...] = ("steering",),
        repeat: int = 1,
    ):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        if batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
        if cache is not None and cache not in CACHE_MODES:
            raise ValueError(f"Expected cache in {CACHE_MODES}. Received: cache={cache!r}")
        if len(log) == 0:
            raise ValueError("DrivingDataset needs a log with at least one row")
        if int(repeat) != repeat or repeat < 1:
            raise ValueError(f"Expected repeat >= 1 (an integer). Received: repeat={repeat}")
        self.repeat = int(repeat)
        if drop_remainder and len(log) * self.repeat < batch_size:
            raise ValueError(f"drop_remainder=True with {len(log)} rows < batch_size={batch_size} leaves no batch")
        self.targets = check_targets(targets)
        self.log = log
        self.batch_size = int(batch_size)
        self.augment = augment
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_remainder = bool(drop_remainder)
        self.epoch = 0
        # Only an augmentation that picks cameras needs the left and right frames.
        self.cameras = log.cameras if getattr(augment, "chooses_camera", False) else ("center",)
        self.cache = None
        self.decode_seconds = 0.0  # building the frame cache
        if cache == "auto":
            cache, why = choose_cache_mode(log, self.cameras, memory_budget)
            where = "memory" if cache == "memory" else f"disk under {cache_dir or default_cache_dir()}"
            logger.info("frame cache: %s (%s)", where, why)
        self.cache_mode = "none" if cache in (None, "none") else cache
        if self.cache_mode != "none":
            if self.cache_mode == "disk" and cache_dir is None:
                cache_dir = default_cache_dir()
            started = time.perf_counter()
            self.cache = FrameCache(log, self.cameras, mode=self.cache_mode, cache_dir=cache_dir, progress=progress)
            self.decode_seconds = time.perf_counter() - started
            self.frame_shape: tuple[int, int, int] = self.cache.frame_shape
            self._shape_source = "the log's frames are"
        else:
            # Frames are read as they are used: the first one sets the size the others must have.
            self.frame_shape = tuple(read_frame(log.images["center"][0], where=log.describe(0)).shape)
            first = f"{log.describe(0)}, center camera: {log.images['center'][0]}"
            self._shape_source = f"the log's first frame ({first}) is"
        self._order_cache: tuple[int, np.ndarray] | None = None
        # Seconds spent in ``batch`` by each thread, keyed by thread: each thread writes only its own entry.
        self._busy_by_thread: dict[int, float] = {}
        self._maker_pid = os.getpid()
        self._shared_slots = self._make_shared_slots()

    def _make_shared_slots(self) -> SharedBatchSlots | None:
        # Forked worker processes hand batches back through shared memory (see data_tools.shared_batches);
        # under other start methods the dataset is pickled, the slots come out unusable and arrays are sent.
        if not self.use_multiprocessing:
            return None
        # Enough for every batch Keras may have queued plus one being filled per worker; pages are only
        # backed once used, and a batch finding no free slot is sent through the pipe instead.
        n_slots = max(1, self.workers) + max(1, self.max_queue_size) + 2
        return SharedBatchSlots(n_slots, self.batch_size, self.frame_shape, self.targets)

    def __len__(self) -> int:
        n = self.rows_per_epoch
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    @property
    def rows_per_epoch(self) -> int:
        """Samples one epoch serves: every row ``repeat`` times, each time freshly augmented."""
        return len(self.log) * self.repeat

    def on_epoch_end(self) -> None:
        """Next epoch: a new order and new augmentations.

        ``model.fit`` also calls this once before its first epoch (Keras'
        ``EpochIterator.reset``), so fit's epoch ``k`` serves epoch ``k + 1`` of a
        fresh dataset; the batches still depend on the seed alone.
        """
        self.epoch += 1
        if self._shared_slots is not None:
            self._shared_slots.reclaim_orphans()  # slots of worker processes that died mid-batch

    def set_epoch(self, epoch: int) -> None:
        """Serve the batches of ``epoch`` (e.g. when resuming training)."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The row order of ``epoch``."""
        # One tuple, replaced whole: threads serving different epochs never see a torn cache.
        cached = self._order_cache
        if cached is None or cached[0] != epoch:
            if self.shuffle:
                rows = np.random.default_rng([self.seed, epoch, 0]).permutation(self.rows_per_epoch) % len(self.log)
            else:
                rows = np.arange(self.rows_per_epoch) % len(self.log)
            cached = (epoch, rows)
            self._order_cache = cached
        return cached[1]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | dict[str, np.ndarray]]:
        if os.getpid() != self._maker_pid:  # a forked worker: see exempt_inherited_objects_from_gc
            exempt_inherited_objects_from_gc()
        slots = self._shared_slots
        handle = None if slots is None else slots.claim(self._batch_length(index))
        if handle is None:
            return self.batch(self.epoch, index)
        try:
            self.batch(self.epoch, index, out=(handle.frames, self._labels(handle.targets)))
        except BaseException:
            slots.release(handle)
            raise
        return handle  # unpickles to the batch (frames, labels) in the parent

    def _labels(self, by_target: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        """A batch's labels as ``batch`` returns them: the steering array alone, or the dict of targets."""
        return by_target["steering"] if self.targets == ("steering",) else {t: by_target[t] for t in self.targets}

    def _batch_length(self, index: int) -> int:
        return max(0, min(self.batch_size, self.rows_per_epoch - int(index) * self.batch_size))

    def batch(
        self, epoch: int, index: int,
        out: tuple[np.ndarray, np.ndarray | dict[str, np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | dict[str, np.ndarray]]:
        """Batch ``index`` of ``epoch``: ``(frames uint8 (B, H, W, 3), steering float32 (B,))``, or
        ``(frames, {target: float32 (B,)})`` with several targets.

        ``out``: arrays of those shapes (the same structure) to fill instead of new ones.
        """
        started = time.perf_counter()
        try:
            return self._make_batch(int(epoch), int(index), out)
        finally:
            thread = threading.get_ident()
            self._busy_by_thread[thread] = self._busy_by_thread.get(thread, 0.0) + time.perf_counter() - started

    @property
    def batch_seconds(self) -> float:
        """Seconds spent making batches so far in this process, summed over its threads (worker processes'
        batches are not counted: they keep their own copy)."""
        return sum(list(self._busy_by_thread.values()))

    def _make_batch(self, epoch: int, index: int, out) -> tuple[np.ndarray, np.ndarray | dict[str, np.ndarray]]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        rows = self.order(int(epoch))[index * self.batch_size : (index + 1) * self.batch_size]
        if out is None:
            frames = np.empty((len(rows), *self.frame_shape), np.uint8)
            labels = {t: np.empty(len(rows), np.float32) for t in self.targets}
        else:
            frames, given = out
            labels = {"steering": given} if self.targets == ("steering",) else dict(given)
            shapes = [labels[t].shape if t in labels else None for t in self.targets]
            if frames.shape != (len(rows), *self.frame_shape) or any(s != (len(rows),) for s in shapes):
                raise ValueError(f"Expected out arrays of shapes {(len(rows), *self.frame_shape)} and {(len(rows),)} "
                                 f"for each of {', '.join(self.targets)}. Received: {frames.shape} and {shapes}")
        steering = labels["steering"]
        throttle = labels.get("throttle")
        rng = np.random.default_rng([self.seed, int(epoch), 1, index])
        for k, row in enumerate(rows):
            sample = Sample(steering=float(self.log.steering[row]), views=self._views(int(row)),
                            throttle=float(self.log.throttle[row]))
            if self.augment is not None:
                sample = self.augment(sample, rng)
            image = sample.image
            if image.shape != self.frame_shape:
                raise DataError(
                    f"{self.log.describe(int(row))}: {sample.camera} frame is {image.shape[1]}x{image.shape[0]} but "
                    f"{self._shape_source} {self.frame_shape[1]}x{self.frame_shape[0]}; all frames of a log must "
                    "have one size"
                )
            frames[k] = image
            steering[k] = sample.steering
            if throttle is not None:
                throttle[k] = sample.throttle  # augmentations pass it through unchanged
        return frames, self._labels(labels)

    def _views(self, row: int) -> dict:
        if self.cache is not None:
            return {c: self.cache.get(c, row) for c in self.cameras if self.cache.has(c, row)}
        views = {}
        for camera in self.cameras:
            path = self.log.images[camera][row]
            if path:
                views[camera] = lambda path=path, where=f"{self.log.describe(row)} ({camera} camera)": read_frame(
                    path, where=where
                )
        return views

    def to_tf_dataset(self, epochs: int | None = 1, first_epoch: int | None = None, parallel_calls: int | None = None):
        """The same batches as a ``tf.data.Dataset``: ``epochs`` epochs back to back.

        Epoch ``e`` (from ``first_epoch``, default the current one) yields exactly
        ``[self.batch(e, i) for i in range(len(self))]``; ``epochs=None`` repeats forever.
        Use it with ``model.fit(ds.to_tf_dataset(epochs=n), epochs=n, steps_per_epoch=len(ds))``.

        Args:
            epochs: how many epochs the dataset holds, ``None`` for endless. Defaults to `1`.
            first_epoch: the first epoch served. Defaults to `self.epoch`.
            parallel_calls: batches assembled in parallel. Defaults to `tf.data.AUTOTUNE`.
        """
        import tensorflow as tf

        start = self.epoch if first_epoch is None else int(first_epoch)
        epochs_ds = tf.data.Dataset.counter(start) if epochs is None else tf.data.Dataset.range(start, start + epochs)
        n_batches = len(self)
        pairs = epochs_ds.flat_map(
            lambda e: tf.data.Dataset.range(n_batches).map(lambda i: (e, i))
        )

        def load(epoch, index):
            frames, labels = self.batch(int(epoch), int(index))
            return (frames, labels) if self.targets == ("steering",) else (frames, *labels.values())

        def tf_load(epoch, index):
            frames, *labels = tf.numpy_function(load, [epoch, index], [tf.uint8] + [tf.float32] * len(self.targets),
                                                stateful=False)
            frames.set_shape((None, *self.frame_shape))
            for values in labels:
                values.set_shape((None,))
            return frames, labels[0] if self.targets == ("steering",) else dict(zip(self.targets, labels))

        return pairs.map(
            tf_load, num_parallel_calls=parallel_calls or tf.data.AUTOTUNE, deterministic=True
        ).prefetch(tf.data.AUTOTUNE)
