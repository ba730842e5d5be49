"""Batches handed back from forked Keras worker processes through shared memory instead of a pipe.

With ``use_multiprocessing=True`` Keras' enqueuer pickles every batch a worker
process returns and sends it through a pipe: for 64 frames of 320x160 that is
9.8 MB copied four times (pickle, pipe write, pipe read, unpickle), which costs
more than making the batch. ``SharedBatchSlots`` is a few batch-sized slots of
anonymous shared memory, created before Keras forks its workers and so
inherited by them. A worker assembles its batch straight into a free slot and
returns a ``SharedBatch`` handle of a few bytes; unpickling the handle in the
parent (Keras' result thread) gives arrays over the slot itself, and the slot
is freed when the last of them is garbage-collected. No batch is copied.

When every slot is busy, or the worker was not forked from the process that
made the slots (``spawn``/``forkserver`` start methods), the batch travels the
ordinary way: correctness never depends on the fast path.

Example:
    >>> slots = SharedBatchSlots(n_slots=6, batch_size=64, frame_shape=(160, 320, 3))
    >>> handle = slots.claim(64)                 # in a forked worker; None -> send arrays instead
    >>> handle.frames[...], handle.steering[...] = frames, steering
    >>> frames, steering = pickle.loads(pickle.dumps(handle))   # in the parent

With several targets (``targets=("steering", "throttle")``) each slot holds one float32 array per target
(``handle.targets[name]``) and a handle unpickles to ``(frames, {"steering": ..., "throttle": ...})``.
"""

from __future__ import annotations

import itertools
import gc
import mmap
import multiprocessing
import os
import weakref

import numpy as np

# Slots by token, so a handle unpickled in the parent finds its memory; forked workers inherit the map.
# Weak: the dataset owns its slots, and its shared memory goes when it does (arrays over a slot keep it alive).
_SLOTS_BY_TOKEN: "weakref.WeakValueDictionary[str, SharedBatchSlots]" = weakref.WeakValueDictionary()
_TOKENS = itertools.count()

_FREE = 0  # a slot's owner: free
_TAKEN = -1  # a slot's owner: arrays over it live in the parent; any other value is the filling worker's pid
_KERAS_WORKER_PREFIX = "Keras_worker_"  # how keras' PyDataset pool initializer names its worker processes


_HEAP_FROZEN_IN: int | None = None  # the pid whose inherited objects were exempted from collection


def exempt_inherited_objects_from_gc() -> None:
    """In a forked child, once: keep the garbage collector away from every object inherited from the parent.

    The parent's uncollected cyclic garbage would otherwise be collected here, running its finalizers
    (TensorFlow's among them) in a process without the parent's threads: that crashed a worker (a
    segfault inside ``gc``), and a pool whose worker dies never returns the task it held. Objects the
    child creates are still collected; Python's ``gc.freeze`` documentation describes the same use.
    """
    global _HEAP_FROZEN_IN
    if _HEAP_FROZEN_IN != os.getpid():
        gc.freeze()
        _HEAP_FROZEN_IN = os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedBatchSlots:
    """Fixed slots of fork-inherited shared memory for ``(frames uint8, steering float32)`` batches.

    Args:
        n_slots: batches that can be in flight at once (workers filling + results not yet unpickled).
        batch_size: the largest batch.
        frame_shape: ``(H, W, 3)`` of every frame.
        targets: the float32 labels of a batch, steering first. ``("steering",)``: batches are
            ``(frames, steering)``; more: ``(frames, {name: labels})``. Defaults to `("steering",)`.
    """

    def __init__(self, n_slots: int, batch_size: int, frame_shape: tuple[int, ...],
                 targets: tuple[str, ...] = ("steering",)):
        if n_slots < 1 or batch_size < 1:
            raise ValueError(f"Expected n_slots >= 1 and batch_size >= 1. Received: n_slots={n_slots}, "
                             f"batch_size={batch_size}")
        targets = tuple(targets)
        if not targets or targets[0] != "steering" or len(set(targets)) != len(targets):
            raise ValueError(f"Expected distinct targets, steering first. Received: targets={targets}")
        self.n_slots = int(n_slots)
        self.batch_size = int(batch_size)
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self.targets = targets
        self.frames_bytes = self.batch_size * int(np.prod(self.frame_shape))
        # Frames, then each target's labels, each starting 64-byte aligned (slots too), so NumPy and TF never
        # copy to align.
        label_bytes = -(-4 * self.batch_size // 64) * 64
        first = -(-self.frames_bytes // 64) * 64
        self._target_offsets = {name: first + k * label_bytes for k, name in enumerate(targets)}
        self.slot_bytes = first + len(targets) * label_bytes
        # Anonymous MAP_SHARED memory: pages are only backed once touched, and forked children share them.
        self._memory = mmap.mmap(-1, self.n_slots * self.slot_bytes)
        self._flat = np.frombuffer(self._memory, np.uint8)
        self._owner = multiprocessing.RawArray("q", self.n_slots)  # _FREE, _TAKEN or a worker's pid
        # Bumped at every claim: a late finalizer of an earlier use of the slot then frees nothing.
        self._use = multiprocessing.RawArray("q", self.n_slots)
        self._claim_lock = multiprocessing.Lock()
        self.creator_pid = os.getpid()
        self.token = f"{self.creator_pid}-{next(_TOKENS)}"
        _SLOTS_BY_TOKEN[self.token] = self

    def __getstate__(self):
        # A pickled copy (spawned worker, deepcopy) cannot share this memory; it sends arrays instead.
        return {"token": None, "creator_pid": None}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def usable_here(self) -> bool:
        """Whether this process is one of Keras' pool workers forked from the process that made the slots.

        Only there is a returned handle unpickled by the slots' maker; any other forked child gets arrays.
        """
        return (self.token is not None and os.getppid() == self.creator_pid
                and multiprocessing.current_process().name.startswith(_KERAS_WORKER_PREFIX)
                and _SLOTS_BY_TOKEN.get(self.token) is self)

    def _views(self, slot: int, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        start = slot * self.slot_bytes
        frames = self._flat[start : start + n * int(np.prod(self.frame_shape))].reshape(n, *self.frame_shape)
        labels = {name: self._flat[start + offset : start + offset + 4 * n].view(np.float32)
                  for name, offset in self._target_offsets.items()}
        return frames, labels

    def claim(self, n: int) -> "SharedBatch | None":
        """A free slot for a batch of ``n`` (in a Keras worker process): fill ``handle.frames`` and
        ``handle.targets[name]`` (``handle.steering`` is ``handle.targets["steering"]``) and return the handle.
        ``None`` when the slots are not shared with this process or all are busy: send the arrays instead."""
        if not self.usable_here() or not 0 < n <= self.batch_size:
            return None
        with self._claim_lock:
            slot = next((k for k in range(self.n_slots) if self._owner[k] == _FREE), None)
            if slot is None:
                return None
            self._owner[slot] = os.getpid()
            self._use[slot] += 1
            use = self._use[slot]
        handle = SharedBatch(self.token, slot, n, use)
        handle.frames, handle.targets = self._views(slot, n)
        handle.steering = handle.targets["steering"]
        return handle

    def release(self, handle: "SharedBatch") -> None:
        """Give back a claimed slot that will not be sent (the batch failed)."""
        with self._claim_lock:
            if self._use[handle.slot] == handle.use:
                self._owner[handle.slot] = _FREE

    def take(self, slot: int, n: int, use: int) -> tuple[np.ndarray, np.ndarray | dict[str, np.ndarray]]:
        """The batch in ``slot`` as arrays over the shared memory itself (in the process that made the slots):
        ``(frames, steering)``, or ``(frames, {name: labels})`` with several targets.

        No copy: the slot stays reserved while any array made from these
        (slices and views included) is alive, and is freed when the last one goes.
        """
        self._owner[slot] = _TAKEN
        lease = _Lease()
        # atexit=False: at interpreter exit nothing needs freeing, and a forked child never frees (see _free).
        weakref.finalize(lease, self._free, slot, use).atexit = False
        frames, labels = self._views(slot, n)
        leased = {name: np.asarray(_LeasedArray(values, lease)) for name, values in labels.items()}
        frames = np.asarray(_LeasedArray(frames, lease))
        return (frames, leased["steering"]) if self.targets == ("steering",) else (frames, leased)

    def _free(self, slot: int, use: int) -> None:
        # A forked child inherits the parent's arrays and their finalizers: only the maker frees, and only the
        # use it leased, never a later one of the same slot.
        # No lock: finalizers run inside any allocation, also while this process holds the lock. None is
        # needed either: only the maker moves a slot out of _TAKEN, and a claim (the only change of
        # ``_use``) needs the slot _FREE.
        if os.getpid() != self.creator_pid:
            return
        if self._use[slot] == use and self._owner[slot] == _TAKEN:
            self._owner[slot] = _FREE

    def reclaim_orphans(self) -> int:
        """Free slots claimed by worker processes that died before their batch was taken (in the maker,
        between epochs, when Keras has collected every batch). Returns how many."""
        if self.token is None or os.getpid() != self.creator_pid:
            return 0
        freed = 0
        with self._claim_lock:
            for k in range(self.n_slots):
                owner = self._owner[k]
                if owner > 0 and not _alive(owner):
                    self._owner[k] = _FREE
                    freed += 1
        return freed

    def busy(self) -> int:
        """Slots filled and not yet freed."""
        return sum(1 for k in range(self.n_slots) if self._owner[k] != _FREE)


class _Lease:
    """Alive while any array over a taken slot is; its finalizer frees the slot."""

    __slots__ = ("__weakref__",)


class _LeasedArray:
    """Exposes a slot's memory to NumPy: arrays made from it keep it, and so the lease, alive."""

    __slots__ = ("__array_interface__", "_source", "_lease")

    def __init__(self, source: np.ndarray, lease: _Lease):
        self.__array_interface__ = source.__array_interface__
        self._source, self._lease = source, lease


class _LostBatch:
    """What a handle unpickles to outside the process that owns its memory: Keras rejects it, quoting this."""

    def __init__(self, message: str):
        self.message = message

    def __str__(self) -> str:
        return self.message

    __repr__ = __str__


def _take_shared_batch(token: str, slot: int, n: int, use: int):
    # Runs in the unpickling thread (Keras' pool result handler): raising here would kill it and hang fit.
    slots = _SLOTS_BY_TOKEN.get(token)
    if slots is None or os.getpid() != slots.creator_pid:
        return _LostBatch(f"shared batch {token}/{slot} reached process {os.getpid()}, which does not own its "
                          "memory (SharedBatch handles only travel from a Keras worker to its parent)")
    return slots.take(slot, n, use)


class SharedBatch:
    """A handle to a batch in a ``SharedBatchSlots`` slot; unpickles to ``(frames, steering)`` (or
    ``(frames, {name: labels})`` with several targets)."""

    __slots__ = ("token", "slot", "n", "use", "frames", "steering", "targets")

    def __init__(self, token: str, slot: int, n: int, use: int):
        self.token, self.slot, self.n, self.use = token, slot, n, use
        self.frames = self.steering = self.targets = None  # the slot's views, in the worker that fills it

    def __reduce__(self):
        return _take_shared_batch, (self.token, self.slot, self.n, self.use)


__all__ = ["SharedBatchSlots", "SharedBatch", "exempt_inherited_objects_from_gc"]
