"""glibc's heap padding for training: a heap that grows is padded by M_TOP_PAD, as glibc itself reports, and a
MALLOC_TOP_PAD_ of the user's wins."""

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
