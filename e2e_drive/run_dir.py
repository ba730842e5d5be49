"""``RunDir``: the folder of one training run, its files, its checks and its lock.

A run folder holds ``config.json`` (``TrainConfig``), ``state.json`` (the last finished epoch and the early-stopping
counters), ``history.csv``, ``loss.png``, ``best.keras`` (the epoch the run's monitor chose: the best
``val_autonomy``, ``val_loss`` or ``loss``, or the last epoch; see ``TrainConfig.select_by``), ``last.keras`` (with
optimizer state, for resuming), ``closed_loop.json`` and ``closed_loop.png`` (best.keras driven closed loop through
the validation span, ``e2e_drive.closed_loop``) and TensorBoard logs under ``logs/``. Every file is written through
``data_tools.io`` (a temporary file moved into place), and a model file only replaces the old one once it has been
loaded back, so a run killed at any moment leaves complete files.

``train.lock`` holds the PID, host and start time of the ``e2e-drive train`` that owns the folder, for the
whole run: a second run into the same folder fails at once, and a lock whose process is gone (killed) is
taken over with a warning.

Example:
    >>> run = RunDir("runs/udacity")
    >>> with run.lock():
    ...     run.check_new(overwrite=False)
    ...     run.write_config(config)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from data_tools import io as atomic
from e2e_drive.train_config import TrainConfig, TrainConfigError

log = logging.getLogger(__name__)

CONFIG, STATE, HISTORY, PLOT, BEST, LAST, LOGS, CLOSED_LOOP, CLOSED_LOOP_PLOT, TIME_SPLIT = (
    "config.json", "state.json", "history.csv", "loss.png", "best.keras", "last.keras", "logs", "closed_loop.json",
    "closed_loop.png", "time_split.json")
# Everything a run writes: a folder holding any of these holds a run.
ARTIFACTS = (CONFIG, STATE, HISTORY, PLOT, BEST, LAST, LOGS, CLOSED_LOOP, CLOSED_LOOP_PLOT, TIME_SPLIT)
LOCK = "train.lock"
_EMPTY_LOCK_GRACE_S = 10.0  # a lock file still empty after this long was left by a process killed mid-create


class RunDirError(ValueError):
    """The run folder cannot be used as asked (holds a run, holds none, is locked, has a damaged file)."""


class RunLockedError(RunDirError):
    """Another ``e2e-drive train`` holds the run folder."""


class RunDir:
    """The files of a training run in ``path``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_token: str | None = None

    def __repr__(self) -> str:
        return f"RunDir({os.fspath(self.path)!r})"

    def __str__(self) -> str:
        return os.fspath(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def best_path(self) -> Path:
        return self.path / BEST

    @property
    def last_path(self) -> Path:
        return self.path / LAST

    @property
    def logs_path(self) -> Path:
        return self.path / LOGS

    # ------------------------------------------------------------------ checks

    def artifacts(self) -> list[str]:
        """The run files present in the folder."""
        return [name for name in ARTIFACTS if os.path.lexists(self.path / name)]

    def check_new(self, overwrite: bool = False) -> None:
        """Refuse a folder that holds a run, unless ``overwrite`` (then its run files are removed)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self}: exists and is not a folder")
        present = self.artifacts()
        if not present:
            return
        if not overwrite:
            raise RunDirError(f"{self}: already holds a run ({', '.join(present)}); pass --resume to continue it, "
                              "--overwrite to replace it, or choose another --out")
        log.warning("%s: --overwrite: removing the previous run (%s)", self, ", ".join(present))
        for name in present:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()

    def check_resumable(self) -> None:
        """Refuse to resume from a folder without a complete checkpoint."""
        missing = [name for name in (CONFIG, STATE, LAST) if not (self.path / name).is_file()]
        if missing:
            raise RunDirError(f"{self}: cannot resume: no checkpoint here ({', '.join(missing)} missing); "
                              "run without --resume to start a run")

    # ------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def lock(self) -> Iterator["RunDir"]:
        """Hold ``train.lock`` for the block (the folder is created if needed)."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def acquire(self) -> None:
        """Take the run's lock; ``RunLockedError`` when a live process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / LOCK
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "process_start": _process_start(os.getpid())}
        for _ in range(5):
            try:
                fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, atomic.file_mode())
            except FileExistsError:
                holder = _read_lock(lock_path)
                if not _is_stale(holder, lock_path):
                    raise RunLockedError(f"{self}: locked by another e2e-drive train ({_describe(holder)}); "
                                         "wait for it to finish, or stop it") from None
                self._take_over(lock_path, holder)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self._lock_token = json.dumps(me, sort_keys=True)
            return
        raise RunLockedError(f"{self}: could not take {LOCK}: other processes keep taking it")

    def _take_over(self, lock_path: Path, holder: dict | None) -> None:
        # Rename, not unlink: of several processes taking over the same stale lock only one renames it, and one
        # that renamed a fresh lock instead (taken by a faster process meanwhile) puts it back.
        aside = lock_path.with_name(f".{LOCK}.{os.getpid()}.stale")
        try:
            os.replace(lock_path, aside)
        except FileNotFoundError:
            return
        moved = _read_lock(aside)
        if moved != holder:
            with contextlib.suppress(FileExistsError):
                os.link(aside, lock_path)
            aside.unlink()
            raise RunLockedError(f"{self}: locked by another e2e-drive train ({_describe(moved)})")
        aside.unlink()
        log.warning("%s: taking over a stale lock (%s, no longer running)", self, _describe(holder))

    def release(self) -> None:
        """Give the lock back (only if this process still holds it)."""
        if self._lock_token is None:
            return
        lock_path = self.path / LOCK
        holder = _read_lock(lock_path)
        if holder is not None and json.dumps(holder, sort_keys=True) == self._lock_token:
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
        self._lock_token = None

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._lock_token is not None

    # ------------------------------------------------------------------ config, state, history

    def read_config(self) -> TrainConfig:
        path = self.path / CONFIG
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RunDirError(f"{path}: missing: the folder holds no run config") from None
        try:
            return TrainConfig.from_json(text, where=str(path))
        except TrainConfigError as error:
            raise RunDirError(str(error)) from None

    def write_config(self, config: TrainConfig) -> None:
        atomic.write_text(self.path / CONFIG, config.to_json())

    def read_state(self) -> dict[str, Any]:
        path = self.path / STATE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{path}: missing: the folder holds no checkpoint") from None
        except ValueError as error:
            raise RunDirError(f"{path}: not valid JSON (half-written or damaged?): {error}") from None
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int) or state["epoch"] < 0:
            raise RunDirError(f"{path}: expected an object with a whole 'epoch' >= 0, got {str(state)[:200]}")
        return state

    def write_closed_loop(self, result: dict[str, Any]) -> None:
        """``closed_loop.json``: how ``best.keras`` drove the validation span
        (``e2e_drive.closed_loop.closed_loop_check``)."""
        atomic.write_json(self.path / CLOSED_LOOP, result)

    def write_time_split(self, split: dict[str, Any]) -> None:
        """``time_split.json``: where the last ``train`` call's wall time went (``e2e_drive.time_split``)."""
        atomic.write_json(self.path / TIME_SPLIT, split)

    def read_history(self) -> dict[str, list[float]]:
        """``history.csv`` as ``{metric: [value per epoch]}`` (empty when the file is absent)."""
        path = self.path / HISTORY
        if not path.exists():
            return {}
        try:
            return history_from_csv(path.read_text(encoding="utf-8"))
        except (ValueError, KeyError) as error:
            raise RunDirError(f"{path}: cannot read the history (damaged?): {error}") from None

    # ------------------------------------------------------------------ models

    def write_epoch(self, model, history: dict[str, list[float]], state: dict[str, Any], config: TrainConfig,
                    improved: bool) -> None:
        """One finished epoch as one step: ``last.keras`` (saved once and loaded back), ``best.keras`` (a copy of
        it, when ``improved``), ``state.json``, ``history.csv``, ``loss.png`` and ``config.json`` all land, or (a
        full disk, a model that does not load back, a kill) none of them, so the folder always describes the
        checkpoint it holds."""
        import keras

        def loads(tmp: str) -> None:
            keras.saving.load_model(tmp, compile=False)

        with atomic.atomic_files() as files:
            with files.staged(self.path / LAST, verify=loads) as last:
                model.save(last)
            if improved:
                with files.staged(self.path / BEST) as best:
                    shutil.copyfile(last, best)
            files.write_json(self.path / STATE, state)
            files.write_text(self.path / HISTORY, history_csv(history))
            files.write_bytes(self.path / PLOT, history_png(history))
            files.write_text(self.path / CONFIG, config.to_json())


# ---------------------------------------------------------------------- history files

def history_csv(history: dict[str, list[float]]) -> str:
    """``epoch,<metric>...`` rows, one per epoch."""
    keys = ["epoch", *sorted(history)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    n = max((len(v) for v in history.values()), default=0)
    for i in range(n):
        writer.writerow([i + 1, *(repr(float(history[k][i])) if i < len(history[k]) else "" for k in keys[1:])])
    return buffer.getvalue()


def history_from_csv(text: str) -> dict[str, list[float]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and "epoch" not in rows[0]:
        raise ValueError("no epoch column")
    keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    return {k: [float(r[k]) for r in rows if r[k] != ""] for k in keys}


def read_history_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """``history.csv`` back into ``{metric: [value per epoch]}``."""
    return history_from_csv(Path(path).read_text(encoding="utf-8"))


def history_png(history: dict[str, list[float]]) -> bytes:
    """Training and validation loss per epoch as PNG bytes."""
    import matplotlib  # here: plotting is the only use, and importing it is slow

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "val_loss"):
        if history.get(key):
            ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE")
    if all(v > 0 for key in ("loss", "val_loss") for v in history.get(key, ())):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return atomic.figure_png(fig)


# ---------------------------------------------------------------------- lock helpers

def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused PID from the holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _read_lock(path: Path) -> dict | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _is_stale(holder: dict | None, lock_path: Path) -> bool:
    if holder is None:
        # Empty or unreadable: being written right now, or left by a process killed between create and write.
        try:
            return time.time() - lock_path.stat().st_mtime > _EMPTY_LOCK_GRACE_S
        except FileNotFoundError:
            return True
    if holder.get("host") != socket.gethostname():
        return False  # a process on another machine: cannot tell, so it holds the lock
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    started = holder.get("process_start")
    return started is not None and _process_start(pid) not in (None, started)  # the PID now names another process


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "lock file being written"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


__all__ = ["ARTIFACTS", "RunDir", "RunDirError", "RunLockedError", "history_csv", "history_png",
           "read_history_csv"]
