"""The error type of bad driving data."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message names the file, the row or record, and what is wrong."""

    def __init__(self, message: str, *, path: str | None = None, row: int | str | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f", row {row}" if isinstance(row, int) else f", {row}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.row = row
