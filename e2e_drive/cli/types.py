"""Argparse ``type=`` functions for numeric flags and output files: a bad value is refused at parse time with a
clear message.

Each raises ``argparse.ArgumentTypeError`` (argparse prints ``argument --lr: ...`` and exits 2) for text that is
not a number, NaN, infinity where a finite value is needed, or a value out of range.

Example:
    >>> parser.add_argument("--lr", type=positive_float, default=None)
    >>> parser.add_argument("--port", type=port, default=4567)
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Callable


def _number(text: str, kind: type = float) -> float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        expected = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (no NaN, no infinity)."""
    return _number(text)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A finite number in [0, 1) (a held-out fraction, a dropout rate)."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    value = int(_number(text, int))
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 1..65535, got {text!r}")
    return value


def int_range(low: int, high: int, why: str | None = None) -> Callable[[str], int]:
    """An integer in [low, high] (an ONNX opset, a size bounded by memory or a grid: ``why`` says by what)."""
    bounded_by = f" ({why})" if why else ""

    def parse(text: str) -> int:
        value = int(_number(text, int))
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}{bounded_by}, got {text!r}")
        return value

    parse.__name__ = f"integer in {low}..{high}"
    return parse


def count(limit: int, why: str) -> Callable[[str], int]:
    """How many of something, 1..limit: every size a user types is bounded."""
    return int_range(1, limit, why)


BATCH_LIMIT = 4096
batch_size = count(BATCH_LIMIT, "a batch held in memory")
SEED_LIMIT = 2**32 - 1  # what every generator of the run (NumPy, TensorFlow, Python) accepts alike
seed = int_range(0, SEED_LIMIT, "a seed")
seed.__doc__ = "A seed, 0..2**32-1."


def bounded_float(limit: float, why: str) -> Callable[[str], float]:
    """A finite number in (0, limit]."""

    def parse(text: str) -> float:
        value = _number(text)
        if not 0 < value <= limit:
            raise argparse.ArgumentTypeError(f"expected a number in (0, {limit:g}] ({why}), got {text!r}")
        return value

    parse.__name__ = f"number in (0, {limit:g}]"
    return parse


def crop(text: str) -> str:
    """``TOP,BOTTOM`` rows cut from the frame, two integers >= 0 (checked here, kept as text for the library)."""
    from data_tools.preprocess import parse_crop

    try:
        top, bottom = parse_crop(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TOP,BOTTOM (two integers, e.g. 60,25), got {text!r}") from None
    if top < 0 or bottom < 0:
        raise argparse.ArgumentTypeError(f"expected rows >= 0, got {text!r}")
    return f"{top},{bottom}"


def output_file(text: str) -> str:
    """A file to write: its folder must exist, checked before the work (a long run is not lost to a typo)."""
    folder = os.path.dirname(os.path.abspath(text))
    if not text or os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"expected a file name, got {text!r}")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} does not exist")
    return text
