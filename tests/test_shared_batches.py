"""SharedBatchSlots: batches from forked workers arrive through shared memory, uncopied, and slots are freed."""

from __future__ import annotations

import gc
import multiprocessing
import pickle

import numpy as np
import pytest

from data_tools.shared_batches import SharedBatchSlots

SHAPE = (6, 10, 3)
_SLOTS: SharedBatchSlots | None = None


def known_batch(n: int, value: int) -> tuple[np.ndarray, np.ndarray]:
    frames = (np.arange(n * np.prod(SHAPE)).reshape(n, *SHAPE) + value).astype(np.uint8)
    return frames, np.linspace(-1, 1, n).astype(np.float32) * value / 10


def _init(slots):
    global _SLOTS
    _SLOTS = slots


def _fill(n: int, value: int):
    """In a forked worker: the batch through a slot when one is free, else the arrays themselves."""
    handle = _SLOTS.claim(n)
    if handle is None:
        return "no slot"
    handle.frames[...], handle.steering[...] = known_batch(n, value)
    return handle


def fork_pool(slots):
    return multiprocessing.get_context("fork").Pool(1, initializer=_init, initargs=(slots,))


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
