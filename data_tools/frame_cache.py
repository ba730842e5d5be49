"""Every frame of a log decoded once: in memory, or in a uint8 memory-mapped file on disk.

JPEG decoding dominates a naive behavioural-cloning input pipeline; decoding
each camera frame once up front (in a thread pool: OpenCV releases the GIL)
leaves only the augmentation per epoch. The cache is read-only once built, so
any number of worker threads or processes can read it consistently.

``mode="disk"`` writes ``frames-<key>.u8`` (+ a ``.json`` header) under
``cache_dir`` for logs that do not fit in memory; the key hashes the image
paths, sizes and modification times, so a later run with the same log reuses
the file without decoding.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from data_tools import io as atomic
from data_tools.errors import DataError
from data_tools.frames import read_frame
from data_tools.log import DrivingLog

log = logging.getLogger(__name__)

MODES = ("memory", "disk")
# What a dataset's ``cache=`` (and ``--cache``) accepts: a mode, ``auto`` (chosen by size) or ``none`` (decode
# every time).
CACHE_MODES = ("auto", *MODES, "none")
# "auto" keeps the decoded frames in memory when they take less than this share of the available memory.
AUTO_MEMORY_SHARE = 0.5


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/e2e-drive/frames`` (``~/.cache/e2e-drive/frames``): where disk caches go by default."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "e2e-drive", "frames")


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable`` of /proc/meminfo, else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def decoded_bytes(log: DrivingLog, cameras: Sequence[str]) -> int:
    """Bytes the decoded frames of ``log`` for ``cameras`` take (distinct files x the first frame's size)."""
    paths = {p for c in cameras if c in log.images for p in log.images[c] if p}
    if not paths:
        return 0
    first = next(p for c in cameras if c in log.images for p in log.images[c] if p)
    return len(paths) * int(np.prod(read_frame(first, where=log.describe(0)).shape))


def choose_cache_mode(log: DrivingLog, cameras: Sequence[str], memory_budget: int | None = None) -> tuple[str, str]:
    """``("memory" | "disk", why)``: memory when the decoded frames fit comfortably, else the disk memmap.

    Args:
        log, cameras: the frames to cache.
        memory_budget: bytes the frames may take in memory. Defaults to `AUTO_MEMORY_SHARE` of
            ``available_memory()``.
    """
    needed = decoded_bytes(log, cameras)
    if memory_budget is None:
        available = available_memory()
        budget, of = int(available * AUTO_MEMORY_SHARE), f"{AUTO_MEMORY_SHARE:.0%} of {_size(available)} available"
    else:
        budget, of = int(memory_budget), "the memory budget"
    if needed < budget:
        return "memory", f"{_size(needed)} of decoded frames fit in {_size(budget)} ({of})"
    return "disk", f"{_size(needed)} of decoded frames exceed {_size(budget)} ({of})"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class FrameCache:
    """Decoded frames of ``log`` for ``cameras``, one slot per distinct image file.

    Args:
        log: the driving log.
        cameras: cameras to decode. Defaults to every camera of the log.
        mode: ``"memory"`` (a NumPy array) or ``"disk"`` (a ``np.memmap`` in ``cache_dir``).
        cache_dir: folder of the disk cache; required for ``mode="disk"``.
        threads: decoding threads. Defaults to `os.cpu_count()`.
        progress: draw a progress bar on stderr while decoding. Defaults to `True`.

    Raises:
        DataError: a frame is missing or corrupt (naming the log row), or the frames are not all of one
            size (naming the odd frames, the most common size and a frame that has it).

    Example:
        >>> cache = FrameCache(log, cameras=("center",))
        >>> cache.get("center", 0).shape
        (160, 320, 3)
    """

    def __init__(
        self,
        log: DrivingLog,
        cameras: Sequence[str] | None = None,
        *,
        mode: str = "memory",
        cache_dir: str | os.PathLike | None = None,
        threads: int | None = None,
        progress: bool = True,
    ):
        if mode not in MODES:
            raise ValueError(f"Expected mode in {MODES}. Received: mode={mode!r}")
        if mode == "disk" and cache_dir is None:
            raise ValueError("mode='disk' needs cache_dir (a folder for the memory-mapped frame file)")
        if len(log) == 0:
            raise ValueError("cannot cache the frames of an empty log")
        self.mode = mode
        self.cameras = tuple(cameras) if cameras is not None else log.cameras
        missing = [c for c in self.cameras if c not in log.images]
        if missing:
            raise ValueError(f"the log has no {missing} camera column(s); it has {list(log.images)}")

        # One slot per distinct path: ``slots[camera][row]`` (-1 where the row has no such image).
        paths: list[str] = []
        where: list[str] = []
        slot_of: dict[str, int] = {}
        self.slots: dict[str, np.ndarray] = {}
        for camera in self.cameras:
            column = np.full(len(log), -1, np.int64)
            for row, path in enumerate(log.images[camera]):
                if not path:
                    continue
                if path not in slot_of:
                    slot_of[path] = len(paths)
                    paths.append(path)
                    where.append(f"{log.describe(row)} ({camera} camera)")
                column[row] = slot_of[path]
            self.slots[camera] = column
        if not paths:
            raise ValueError(f"the log has no images for cameras {self.cameras}")
        self.paths = paths
        self._where = where
        self._path: str | None = None

        first = read_frame(paths[0], where=where[0])
        self.frame_shape: tuple[int, int, int] = tuple(first.shape)  # type: ignore[assignment]
        shape = (len(paths), *self.frame_shape)
        if mode == "disk":
            self.frames = self._disk_frames(os.fspath(cache_dir), shape, first, threads, progress)
        else:
            self.frames = np.empty(shape, np.uint8)
            self._decode_into(self.frames, first, threads, progress)
            self.frames.flags.writeable = False

    def _decode_into(self, frames: np.ndarray, first: np.ndarray, threads: int | None, progress: bool) -> None:
        from data_tools.progress import progress as progress_bar

        frames[0] = first
        # Frames of another size than the first are counted, not stored: once all are decoded, the most common
        # size tells which frames are the odd ones (the first frame may be one of them).
        other_sizes: dict[int, tuple[int, ...]] = {}

        def decode(i: int) -> None:
            frame = read_frame(self.paths[i], where=self._where[i])
            if frame.shape != first.shape:
                other_sizes[i] = frame.shape
                return
            frames[i] = frame

        with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
            for _ in progress_bar(pool.map(decode, range(1, len(self.paths))), total=len(self.paths) - 1,
                                  label="decoding frames", enabled=progress):
                pass
        if other_sizes:
            raise DataError(self._size_mismatch({0: first.shape, **other_sizes}))

    def _size_mismatch(self, sizes: dict[int, tuple[int, ...]]) -> str:
        """The error for frames of several sizes: ``sizes`` holds the first frame's and every other-sized one's
        (every frame not in it has the first frame's size). The odd frames are those not of the most common
        size (ties: the first frame's)."""
        counts = Counter(sizes.values())
        counts[sizes[0]] += len(self.paths) - len(sizes)
        common = max(counts, key=lambda size: (counts[size], size == sizes[0]))
        odd = sorted(i for i, size in sizes.items() if size != common)
        example = 0 if sizes[0] == common else min(i for i, size in sizes.items() if size == common)
        others = counts[common]

        def show(size):
            return f"{size[1]}x{size[0]}"

        i = odd[0]
        more = ""
        if len(odd) > 1:
            listed = "; ".join(f"{self._where[k]} is {show(sizes[k])}" for k in odd[1:4])
            more = f"; {len(odd) - 1} more frame(s) of another size: {listed}{'; ...' if len(odd) > 4 else ''}"
        return (f"{self._where[i]}: frame {self.paths[i]} is {show(sizes[i])} but {others} other frame(s) of the log "
                f"are {show(common)} (e.g. {self._where[example]}: {self.paths[example]}){more}; all frames of a log "
                "must have one size")

    def _disk_frames(self, cache_dir: str, shape: tuple[int, ...], first: np.ndarray, threads, progress) -> np.ndarray:
        if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
            raise NotADirectoryError(errno.ENOTDIR, "--cache-dir is a file, not a folder", cache_dir)
        try:
            os.makedirs(cache_dir, exist_ok=True)
        except OSError as error:
            raise type(error)(error.errno, f"--cache-dir cannot be created ({error.strerror})", cache_dir) from None
        digest = hashlib.sha256()
        for path in self.paths:
            stat = os.stat(path)
            digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        key = digest.hexdigest()[:16]
        data_path = os.path.join(cache_dir, f"frames-{key}.u8")
        header_path = data_path[:-3] + ".json"
        header = {"shape": list(shape), "dtype": "uint8", "paths": len(self.paths)}
        try:
            with open(header_path, encoding="utf-8") as f:
                reusable = json.load(f) == header and os.path.getsize(data_path) == int(np.prod(shape))
        except (OSError, ValueError):
            reusable = False
        if not reusable:
            # Decode into a temporary file moved into place when complete: an interrupted run leaves no half cache.
            with atomic.atomic_path(data_path) as tmp:
                frames = np.memmap(tmp, np.uint8, mode="w+", shape=shape)
                self._decode_into(frames, first, threads, progress)
                frames.flush()
                del frames
            atomic.write_json(header_path, header)
        self._path = data_path
        return np.memmap(data_path, np.uint8, mode="r", shape=shape)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)

    @property
    def path(self) -> str | None:
        """The memory-mapped file (``mode="disk"``), else ``None``."""
        return self._path

    def has(self, camera: str, row: int) -> bool:
        return camera in self.slots and self.slots[camera][row] >= 0

    def get(self, camera: str, row: int) -> np.ndarray:
        """The decoded frame of ``row`` from ``camera`` (a read-only view; copy before changing it)."""
        return self.frames[self.slots[camera][row]]

    def __getstate__(self) -> dict:
        # Worker processes reopen the memory-mapped file instead of receiving a pickled copy of it.
        state = self.__dict__.copy()
        if self._path is not None:
            state["frames"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._path is not None:
            self.frames = np.memmap(self._path, np.uint8, mode="r", shape=(len(self.paths), *self.frame_shape))
