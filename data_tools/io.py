"""Atomic file writing, the one way every file of the project is written.

Each writer puts the data into a temporary file in the target's folder, flushes
it to disk and moves it into place with ``os.replace``: a reader sees the old
file or the new one, never half of either, and a failure (an exception, a full
disk, a kill) leaves the previous file byte-identical and no temporary file.
Files get the permissions the user's umask asks for (``tempfile.mkstemp`` alone
would leave them 0600).

Example:
    >>> from data_tools.io import write_json, atomic_path
    >>> write_json("runs/a/config.json", {"epochs": 10})
    >>> with atomic_path("runs/a/best.keras") as tmp:
    ...     model.save(tmp)          # moved into place only if this block succeeds
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    # os.umask can only be read by setting it; the lock keeps threads from seeing the 0 in between.
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new regular file gets under the current umask (0o644 under the usual 022)."""
    return 0o666 & ~_umask()


def _temporary_name(path: Path, directory: bool = False) -> str:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        above = next((p for p in parent.parents if p.exists()), None) if not parent.exists() else parent
        if above is not None and above.exists() and not above.is_dir():
            raise NotADirectoryError(f"{path}: {above} is a file, not a folder")
        raise FileNotFoundError(f"{path}: the folder {parent} does not exist")
    if path.is_dir() and not directory:
        raise IsADirectoryError(f"{path}: is a directory, expected a file path")
    try:
        if directory:
            return tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    except OSError as error:
        # Name the file the user asked for, not our temporary name beside it.
        raise type(error)(error.errno, f"{path}: cannot write here: {error.strerror}") from None
    os.close(fd)
    return tmp


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, verify: Callable[[str], Any] | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path``; when the block succeeds, ``verify(tmp)`` then move it into place.

    For libraries that write a file themselves (``model.save``, ``onnx.save``, ``cv2.VideoWriter``). The
    temporary name keeps ``path``'s suffix (Keras checks for ``.keras``). On any exception, in the block or
    in ``verify``, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    tmp = _temporary_name(target)
    try:
        with _naming(target, tmp):
            yield tmp
            if verify is not None:
                verify(tmp)
            os.chmod(tmp, file_mode())
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically (NumPy scalars and arrays allowed)."""
    write_text(path, json.dumps(payload, indent=2, default=json_default) + "\n")


def json_default(value: Any) -> Any:
    """``json.dumps`` ``default=`` for NumPy scalars/arrays and paths."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@contextlib.contextmanager
def _naming(target: str | os.PathLike, tmp: str) -> Iterator[None]:
    """OS errors about ``tmp`` (a full disk, a size limit) name the file the user asked for instead."""
    try:
        yield
    except OSError as error:
        if error.errno is not None and error.filename in (None, tmp):
            raise type(error)(error.errno, error.strerror, os.fspath(target)) from None
        raise


def _keep_aside(target: Path) -> str | None:
    """A second name for ``target``'s current file (a hard link, else a copy), to put it back from."""
    if not target.is_file():
        return None
    backup = _temporary_name(target)
    os.remove(backup)
    try:
        os.link(target, backup)
    except OSError:  # a file system without hard links
        shutil.copy2(target, backup)
    return backup


class FileSet:
    """Files written as one step (``atomic_files``): staged beside their targets, moved into place together."""

    def __init__(self):
        self._staged: list[tuple[Path, str, Callable[[str], Any] | None]] = []

    @contextlib.contextmanager
    def staged(self, target: str | os.PathLike, verify: Callable[[str], Any] | None = None) -> Iterator[str]:
        """Yield a temporary path that becomes ``target`` when the set lands (after ``verify(tmp)``); OS errors
        while writing it name ``target``."""
        target = Path(target)
        if any(staged == target for staged, _, _ in self._staged):
            raise ValueError(f"{target}: staged twice in one file set")
        tmp = _temporary_name(target)
        self._staged.append((target, tmp, verify))
        with _naming(target, tmp):
            yield tmp

    def write_bytes(self, target: str | os.PathLike, data: bytes) -> None:
        with self.staged(target) as tmp, open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def write_text(self, target: str | os.PathLike, text: str) -> None:
        self.write_bytes(target, text.encode("utf-8"))

    def write_json(self, target: str | os.PathLike, payload: Any) -> None:
        self.write_text(target, json.dumps(payload, indent=2, default=json_default) + "\n")

    def _commit(self) -> None:
        for target, tmp, verify in self._staged:
            with _naming(target, tmp):
                if verify is not None:
                    verify(tmp)
                os.chmod(tmp, file_mode())
        # Moving cannot run out of space, but it can still fail (a folder put where a file was): every target
        # replaced so far is put back from a link to its old version, so the set lands whole or not at all.
        moved: list[tuple[Path, str | None]] = []
        try:
            for target, tmp, _ in self._staged:
                backup = _keep_aside(target)
                try:
                    with _naming(target, tmp):
                        os.replace(tmp, target)
                except BaseException:
                    if backup is not None:
                        os.remove(backup)
                    raise
                moved.append((target, backup))
        except BaseException:
            for target, backup in reversed(moved):
                if backup is None:
                    _remove(os.fspath(target))
                else:
                    os.replace(backup, target)
            raise
        for _, backup in moved:
            if backup is not None:
                os.remove(backup)

    def _discard(self) -> None:
        for _, tmp, _ in self._staged:
            _remove(tmp)


@contextlib.contextmanager
def atomic_files() -> Iterator[FileSet]:
    """Write several files as one step: all of them, in the order staged, or none.

    For run folders whose files describe one moment together (a checkpoint, its state and its history): a
    failure while writing any of them (a full disk, a size limit, a kill) leaves every target byte-identical.

    Example:
        >>> with atomic_files() as files:
        ...     with files.staged("runs/a/last.keras") as tmp:
        ...         model.save(tmp)
        ...     files.write_json("runs/a/state.json", {"epoch": 3})
    """
    files = FileSet()
    try:
        yield files
        files._commit()
    finally:
        files._discard()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, verify: Callable[[str], Any] | None = None) -> Iterator[str]:
    """Yield a temporary folder beside ``path``; on success, ``verify`` it and swap it in for ``path``.

    The old folder (if any) is renamed aside first and removed only after the new one is in place, so a
    failure at any point leaves either the old or the new folder under ``path``.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a folder")
    tmp = _temporary_name(target, directory=True)
    try:
        yield tmp
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if target.exists():
            old = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old")
            os.rmdir(old)
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        _remove(tmp)
        raise


def figure_png(figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def save_figure(figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a matplotlib figure as a PNG at ``path`` atomically, then close it."""
    write_bytes(path, figure_png(figure, dpi))
