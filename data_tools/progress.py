"""A small progress bar on stderr for loops that are not ``model.fit``."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, label: str = "", enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####.....] i/total  elapsed`` on stderr."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    start = time.perf_counter()
    interactive = enabled and sys.stderr.isatty()
    last_draw = 0.0
    for i, item in enumerate(items, 1):
        yield item
        now = time.perf_counter()
        if enabled and (now - last_draw > 0.2 or i == total):
            last_draw = now
            if total:
                filled = int(30 * i / total)
                bar = f"[{'#' * filled}{'.' * (30 - filled)}] {i}/{total}"
            else:
                bar = f"{i}"
            line = f"{label} {bar}  {now - start:.1f}s"
            if interactive:
                sys.stderr.write("\r" + line)
            elif i == total or (total and i % max(1, total // 10) == 0):
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
    if interactive:
        sys.stderr.write("\n")
