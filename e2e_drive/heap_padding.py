"""Keep freed memory in the process while training: glibc's ``M_TOP_PAD``, one arena, no mmap'd blocks.

TensorFlow's CPU step and the batch makers allocate and free tens of megabytes per step. With glibc's defaults
the heaps shrink back as soon as those are freed, so every step faults the same pages in again: two epochs of
PilotNet on donkey_tub_real (126 steps of 64 frames) took 7.6 M minor page faults and 22 s of kernel time. Padding
each heap growth by 64 MB keeps the pages that the next step reuses: 1.1 M faults, 5 s in the kernel, a first
epoch of 218-235 ms per step instead of 311-332, the same losses bit for bit, 130-330 MB more peak memory
(BENCHMARKS.md, "Training").

Blocks above 32 MB (ReferenceConv2D's patch matrices: 100 MB at batch 64) are still mmap'd and unmapped one by
one, and a thread's own arena cannot hold them, so one arena without mmap keeps those too: ReferenceConv2D's
train step 2.1x Conv2D's -> 1.4x in `e2e-drive bench layers` (BENCHMARKS.md, "Layers"). glibc creates a thread's arena at its first
allocation, so call this before TensorFlow runs its first op (the CLI does, before any command).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -2, -3, -4, -8  # glibc's malloc.h
TOP_PAD_BYTES = 64 << 20
# Setting any parameter freezes glibc's sliding mmap threshold at its start (128 kB): tensors above it would each
# be a fresh mmap. Its ceiling (32 MB on 64-bit) keeps them in the heaps, and so does a trim threshold above it;
# no mmap at all keeps the larger ones, which only the main arena (grown by brk, not 64 MB heaps) can hold.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 256 << 20
ARENAS = 1

_applied: bool | None = None


def pad_the_heap(top_pad: int = TOP_PAD_BYTES) -> bool:
    """Set glibc's ``M_TOP_PAD`` to ``top_pad`` bytes for this process (once); ``True`` when it is set.

    Also one arena for every thread and no mmap'd blocks, so that freed blocks of any size are reused. Nothing
    changes where the C library is not glibc, or when a ``MALLOC_*`` variable or ``GLIBC_TUNABLES`` is set in
    the environment (the user's own choice).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    users_own = any(name.startswith("MALLOC_") or name == "GLIBC_TUNABLES" for name in os.environ)
    if not sys.platform.startswith("linux") or users_own:
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return False  # musl and others: their mallopt does not take glibc's parameters
        settings = ((M_ARENA_MAX, ARENAS), (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_MMAP_MAX, 0),
                    (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), (M_TOP_PAD, int(top_pad)))
        _applied = all([bool(libc.mallopt(ctypes.c_int(p), ctypes.c_int(v))) for p, v in settings])
    except (OSError, AttributeError):
        return False
    log.debug("glibc M_TOP_PAD %d bytes: %s", top_pad, "set" if _applied else "refused")
    return _applied
