"""glibc's heap settings for training: a heap that grows is padded by M_TOP_PAD, as glibc itself reports, a freed
block above the mmap ceiling is reused by another thread, and the user's own MALLOC_ settings win."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# In a fresh process: grow the heap with one 8 MB block and print how much the heap grew (glibc's mallinfo2).
GROWTH = """
import ctypes, sys
from e2e_drive.heap_padding import pad_the_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
applied = pad_the_heap()
before = libc.mallinfo2().arena
block = libc.malloc(8 << 20)
print(applied, libc.mallinfo2().arena - before)
"""


def _glibc_with_mallinfo2() -> bool:
    libc = ctypes.CDLL(None)
    return sys.platform.startswith("linux") and hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallinfo2")


pytestmark = pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallopt, mallinfo2)")


def _growth(**env: str) -> tuple[bool, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", GROWTH], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**environ, "PYTHONPATH": str(REPO), **env}).stdout.split()
    return out[0] == "True", int(out[1])


def test_a_growing_heap_is_padded_and_the_users_own_setting_wins():
    from e2e_drive.heap_padding import TOP_PAD_BYTES

    applied, grown = _growth()
    assert applied and grown >= TOP_PAD_BYTES  # the block and the pad that the next steps reuse
    # glibc's default pad (128 kB) given by the user: left alone, and the heap grows by little more than the block
    applied, grown = _growth(MALLOC_TOP_PAD_=str(128 << 10))
    assert not applied and grown < TOP_PAD_BYTES


# In a fresh process: a thread allocates, fills and frees a 96 MB block (above glibc's largest mmap threshold, like
# ReferenceConv2D's patch matrix) twice, and prints the page faults of the second time.
REUSE = """
import ctypes, resource, threading
from e2e_drive.heap_padding import pad_the_heap

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
applied = pad_the_heap()
SIZE = 96 << 20
faults = []

def fill_and_free():
    block = libc.malloc(SIZE)
    libc.memset(block, 1, SIZE)
    libc.free(block)

def step_twice():
    fill_and_free()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fill_and_free()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

thread = threading.Thread(target=step_twice)
thread.start()
thread.join()
print(applied, faults[0])
"""


def _second_fill_faults(**env: str) -> tuple[bool, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", REUSE], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**environ, "PYTHONPATH": str(REPO), **env}).stdout.split()
    return out[0] == "True", int(out[1])


def test_a_freed_block_above_the_mmap_ceiling_is_reused_by_a_thread():
    applied, padded_faults = _second_fill_faults()
    # The user's own malloc settings (here glibc's default arena count) switch ours off: the block is mmap'd anew.
    not_applied, default_faults = _second_fill_faults(MALLOC_ARENA_MAX="8")
    assert applied and not not_applied
    assert default_faults > 0  # every page of the new mapping faults in again (fewer with transparent huge pages)
    assert padded_faults * 10 < default_faults
