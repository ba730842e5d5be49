"""SharedBatchSlots: batches from forked workers arrive through shared memory, uncopied, and slots are freed."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle

import numpy as np
import pytest

from data_tools.shared_batches import (
    _SLOTS_BY_TOKEN,
    SharedBatch,
    SharedBatchSlots,
    exempt_inherited_objects_from_gc,
)

SHAPE = (6, 10, 3)
_SLOTS: SharedBatchSlots | None = None


def known_batch(n: int, value: int) -> tuple[np.ndarray, np.ndarray]:
    frames = (np.arange(n * np.prod(SHAPE)).reshape(n, *SHAPE) + value).astype(np.uint8)
    return frames, np.linspace(-1, 1, n).astype(np.float32) * value / 10


def _init(slots, keras_worker: bool = True):
    global _SLOTS
    _SLOTS = slots
    exempt_inherited_objects_from_gc()  # as DrivingDataset's workers do: the xdist worker may hold TensorFlow
    if keras_worker:  # named as keras' PyDataset pool initializer names its workers
        multiprocessing.current_process().name = "Keras_worker_" + multiprocessing.current_process().name


def _fill(n: int, value: int):
    """In a forked worker: the batch through a slot when one is free, else the arrays themselves."""
    handle = _SLOTS.claim(n)
    if handle is None:
        return "no slot"
    handle.frames[...], handle.steering[...] = known_batch(n, value)
    return handle


class BoundedPool:
    """A one-worker fork pool whose calls fail after a timeout: a worker that dies loses its task, and
    ``Pool.apply`` would then wait for ever."""

    def __init__(self, slots, keras_worker: bool):
        self._pool = multiprocessing.get_context("fork").Pool(1, initializer=_init, initargs=(slots, keras_worker))

    def apply(self, fn, args=()):
        pending = self._pool.apply_async(fn, args)
        value = pending.get(timeout=60)
        # The pool's result thread can still be inside pending._set (holding pending, so the value) when get()
        # returns: drop that reference, or a test counting live batches races it.
        pending._value = None
        # Its local variables hold the value too until it takes the next result: pass it a no-op's result.
        self._pool.apply_async(int).get(timeout=60)
        return value

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pool.terminate()
        self._pool.join()


def fork_pool(slots, keras_worker: bool = True) -> BoundedPool:
    return BoundedPool(slots, keras_worker)


def test_batch_from_a_forked_worker_arrives_uncopied_and_its_slot_is_freed():
    slots = SharedBatchSlots(n_slots=2, batch_size=4, frame_shape=SHAPE)
    with fork_pool(slots) as pool:
        frames, steering = pool.apply(_fill, (3, 5))
    expected_frames, expected_steering = known_batch(3, 5)
    np.testing.assert_array_equal(frames, expected_frames)
    np.testing.assert_array_equal(steering, expected_steering)
    assert frames.dtype == np.uint8 and steering.dtype == np.float32
    assert np.shares_memory(frames, slots._flat) and np.shares_memory(steering, slots._flat)
    assert slots.busy() == 1
    del frames, steering
    gc.collect()
    assert slots.busy() == 0


def test_a_slot_stays_reserved_while_any_view_of_it_lives():
    slots = SharedBatchSlots(n_slots=1, batch_size=4, frame_shape=SHAPE)
    with fork_pool(slots) as pool:
        frames, steering = pool.apply(_fill, (4, 1))
        tail = frames[2:, 1]
        del frames, steering
        gc.collect()
        assert slots.busy() == 1
        # The only slot is in use, so the next batch cannot overwrite what ``tail`` shows.
        assert pool.apply(_fill, (4, 9)) == "no slot"
        np.testing.assert_array_equal(tail, known_batch(4, 1)[0][2:, 1])
        del tail
        gc.collect()
        assert slots.busy() == 0
        frames, _ = pool.apply(_fill, (4, 9))
        np.testing.assert_array_equal(frames, known_batch(4, 9)[0])


def test_slots_are_not_used_where_memory_is_not_shared():
    slots = SharedBatchSlots(n_slots=2, batch_size=4, frame_shape=SHAPE)
    assert slots.claim(4) is None  # the process that made them: a batch needs no hand-over
    copy = pickle.loads(pickle.dumps(slots))  # what a spawned worker gets
    assert not copy.usable_here() and copy.claim(4) is None
    with fork_pool(slots) as pool:
        assert pool.apply(_fill, (5, 0)) == "no slot"  # larger than a slot
        assert pool.apply(_fill, (0, 0)) == "no slot"


def test_released_slot_is_reused():
    slots = SharedBatchSlots(n_slots=1, batch_size=2, frame_shape=SHAPE)
    with fork_pool(slots) as pool:
        assert pool.apply(_claim_and_release) == 0


def _claim_and_release() -> int:
    handle = _SLOTS.claim(2)
    _SLOTS.release(handle)
    again = _SLOTS.claim(2)
    busy = _SLOTS.busy()
    _SLOTS.release(again)
    return _SLOTS.busy() + (busy - 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_slots"):
        SharedBatchSlots(n_slots=0, batch_size=4, frame_shape=SHAPE)


def test_other_forked_processes_get_no_slot():
    """Only Keras' pool workers hand back handles: any other child's result would never reach the slots' maker."""
    slots = SharedBatchSlots(n_slots=2, batch_size=4, frame_shape=SHAPE)
    with fork_pool(slots, keras_worker=False) as pool:
        assert pool.apply(_fill, (2, 0)) == "no slot"
    assert slots.busy() == 0


def _drop_inherited_arrays_and_collect() -> int:
    global _HELD
    _HELD = None
    gc.collect()
    return 0


_HELD = None


def test_a_forked_child_dropping_inherited_arrays_does_not_free_the_parents_slot():
    global _HELD
    slots = SharedBatchSlots(n_slots=1, batch_size=4, frame_shape=SHAPE)
    with fork_pool(slots) as pool:
        _HELD = pool.apply(_fill, (4, 2))
    # A new pool forks a child that inherits _HELD (and its finalizer) and lets it go.
    with fork_pool(slots) as pool:
        assert pool.apply(_drop_inherited_arrays_and_collect) == 0
        assert slots.busy() == 1
        assert pool.apply(_fill, (4, 7)) == "no slot"  # still reserved: the parent's batch is intact
    np.testing.assert_array_equal(_HELD[0], known_batch(4, 2)[0])
    _HELD = None
    gc.collect()
    assert slots.busy() == 0


def test_a_stale_free_of_an_earlier_use_frees_nothing():
    slots = SharedBatchSlots(n_slots=1, batch_size=2, frame_shape=SHAPE)
    with fork_pool(slots) as pool:
        frames, _ = pool.apply(_fill, (2, 1))
        slot = 0
        slots._free(slot, slots._use[slot] - 1)  # a finalizer left over from the slot's previous use
        assert slots.busy() == 1
        del frames, _
        gc.collect()
        assert slots.busy() == 0


def _claim_and_die() -> None:
    assert _SLOTS.claim(2) is not None
    os._exit(0)  # a worker killed mid-batch: its slot is never sent


def test_slots_of_dead_workers_are_reclaimed_between_epochs():
    slots = SharedBatchSlots(n_slots=2, batch_size=2, frame_shape=SHAPE)
    ctx = multiprocessing.get_context("fork")
    worker = ctx.Process(target=lambda: (_init(slots), _claim_and_die()))
    worker.start()
    worker.join(timeout=30)
    assert slots.busy() == 1
    assert slots.reclaim_orphans() == 1 and slots.busy() == 0


def test_a_handle_reaching_the_wrong_process_does_not_raise():
    """Keras unpickles results in its pool's result thread: an exception there would hang fit."""
    lost = pickle.loads(pickle.dumps(SharedBatch("no-such-token", 0, 1, 1)))
    assert "does not own its memory" in str(lost)


def test_shared_memory_goes_with_its_owner():
    slots = SharedBatchSlots(n_slots=1, batch_size=1, frame_shape=SHAPE)
    token = slots.token
    del slots
    gc.collect()
    assert token not in _SLOTS_BY_TOKEN


def _fill_with_throttle(n: int):
    handle = _SLOTS.claim(n)
    frames, steering = known_batch(n, 3)
    handle.frames[...], handle.targets["steering"][...] = frames, steering
    handle.targets["throttle"][...] = np.arange(n, dtype=np.float32) / 8
    return handle


def test_batches_with_several_targets_unpickle_to_a_dict_of_labels():
    slots = SharedBatchSlots(n_slots=2, batch_size=4, frame_shape=SHAPE, targets=("steering", "throttle"))
    with fork_pool(slots) as pool:
        frames, labels = pool.apply(_fill_with_throttle, (3,))
    expected_frames, expected_steering = known_batch(3, 3)
    np.testing.assert_array_equal(frames, expected_frames)
    assert list(labels) == ["steering", "throttle"]
    np.testing.assert_array_equal(labels["steering"], expected_steering)
    np.testing.assert_array_equal(labels["throttle"], np.arange(3, dtype=np.float32) / 8)
    assert all(np.shares_memory(a, slots._flat) for a in (frames, *labels.values()))
    # Each label array starts 64-byte aligned, past the one before it.
    starts = [a.__array_interface__["data"][0] - slots._flat.__array_interface__["data"][0] for a in labels.values()]
    assert all(start % 64 == 0 for start in starts) and starts[0] >= slots.frames_bytes and starts[1] > starts[0]
    del frames, labels
    gc.collect()
    assert slots.busy() == 0
    with pytest.raises(ValueError, match="steering first"):
        SharedBatchSlots(1, 1, SHAPE, targets=("throttle", "steering"))
