"""The error type of bad driving data."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message names the file, the row or record, and what is wrong.

    Args:
        message: what is wrong (and a hint where one helps).
        path: the file or folder, first in the message.
        row: the data row (an int: ``"row 3"``; a CSV's header is not a row) or any other place in the file
            (a str, as written: ``"record 7 (line 9)"``).
        line: the physical line of the file (1-based, as an editor numbers it), added when it differs from
            ``row``: ``"row 1 (line 2)"`` in a CSV with a header; alone, ``"line 2"``.
    """

    def __init__(self, message: str, *, path: str | None = None, row: int | str | None = None,
                 line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if isinstance(row, int):
                where += f", row {row}" if line is None or line == row else f", row {row} (line {line})"
            elif row is not None:
                where += f", {row}"
            elif line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.row = row
        self.line = line


def first_line(error: BaseException | str, limit: int | None = 300) -> str:
    """The first line of an exception's message (at most ``limit`` characters), or its type's name when it has
    none: what a one-line error report quotes of a library's multi-line message."""
    text = str(error).strip()
    if not text:
        return "" if isinstance(error, str) else type(error).__name__
    line = text.splitlines()[0]
    return line if limit is None else line[:limit]

