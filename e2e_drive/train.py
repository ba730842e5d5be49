"""Train PilotNet on driving logs: ``e2e_drive.train.train`` (what ``e2e-drive train`` calls).

A run directory holds ``config.json``, ``best.keras`` (best validation loss),
``last.keras`` (with optimizer state, for ``resume``), ``state.json`` (epoch,
early-stopping counters), ``history.csv``, ``loss.png`` and TensorBoard logs
under ``logs/``. Every file is written to a temporary name and moved into place
with ``os.replace``, so a run killed at any moment leaves only complete files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from data_tools.log import DrivingLog

STRATEGIES = ("auto", "mirrored", "multiworker")


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: str
    best_model_path: str
    last_model_path: str
    history: dict[str, list[float]] = field(default_factory=dict)
    val_rmse: float = float("nan")
    train_seconds: float = 0.0
    num_train: int = 0
    num_val: int = 0
    epochs_run: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- atomic files

def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """``model.save`` (with optimizer state) to a temporary ``.keras`` file, then ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def history_csv(history: dict[str, list[float]]) -> str:
    keys = ["epoch", *sorted(history)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(keys)
    n = max((len(v) for v in history.values()), default=0)
    for i in range(n):
        writer.writerow([i + 1, *(history[k][i] if i < len(history[k]) else "" for k in keys[1:])])
    return buffer.getvalue()


def read_history_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """``history.csv`` back into ``{metric: [value per epoch]}``."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    return {k: [float(r[k]) for r in rows] for k in keys}


def plot_history(history: dict[str, list[float]], path: str | os.PathLike) -> None:
    """Training and validation loss per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "val_loss"):
        if history.get(key):
            ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


# ----------------------------------------------------------------------------- checkpoints

def _checkpoint_callback_class():
    import keras

    class RunCheckpoint(keras.callbacks.Callback):
        """Each epoch: ``last.keras`` (with optimizer), ``best.keras`` on improvement,
        ``history.csv``, ``loss.png`` and ``state.json`` (early stopping included), all atomic.

        Early stopping lives here (not in ``keras.callbacks.EarlyStopping``) so its
        counters survive a resume.
        """

        def __init__(self, run_dir: Path, history: dict[str, list[float]], state: dict[str, Any], patience: int):
            super().__init__()
            self.run_dir = run_dir
            self.history = history
            self.state = state
            self.patience = int(patience)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = dict(logs or {})
            for key, value in logs.items():
                self.history.setdefault(key, []).append(float(value))
            monitor = "val_loss" if "val_loss" in logs else "loss"
            value = float(logs[monitor])
            improved = value < self.state.get("best", float("inf"))
            if improved:
                self.state.update(best=value, best_epoch=epoch + 1, wait=0)
            if improved or not (self.run_dir / "best.keras").exists():
                # A first epoch with a NaN loss still leaves a best.keras (the only model there is).
                save_model_atomic(self.model, self.run_dir / "best.keras")
            if not improved:
                self.state["wait"] = self.state.get("wait", 0) + 1
            save_model_atomic(self.model, self.run_dir / "last.keras")
            write_atomic(self.run_dir / "history.csv", history_csv(self.history))
            plot_history(self.history, self.run_dir / "loss.png")
            self.state["epoch"] = epoch + 1
            if self.patience and self.state["wait"] >= self.patience:
                self.state["stopped_early"] = True
                self.model.stop_training = True
            # state.json last: it says "everything of this epoch is on disk".
            write_atomic(self.run_dir / "state.json", json.dumps(self.state, indent=2))

    return RunCheckpoint


# ----------------------------------------------------------------------------- data

def load_log(data: Sequence[str] | str | DrivingLog, on_error: str = "raise") -> DrivingLog:
    """A ``DrivingLog`` from paths (Udacity folders/CSVs, tubs, recordings) or a log as is."""
    if isinstance(data, DrivingLog):
        log = data
    else:
        import data_tools

        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        if not paths:
            raise ValueError("no data given: pass at least one Udacity folder, tub or recording")
        log = data_tools.read_log([os.fspath(p) for p in paths], on_error=on_error)
        where = ", ".join(os.fspath(p) for p in paths)
        if len(log) == 0:
            raise ValueError(f"no usable rows in {where}")
    if len(log) == 0:
        raise ValueError("the driving log is empty: nothing to train on")
    return log


def smooth(log: DrivingLog, sigma: float) -> DrivingLog:
    """Gaussian-smoothed steering labels (``data_tools.smooth_steering``)."""
    if not sigma:
        return log
    import data_tools

    return data_tools.smooth_steering(log, sigma)


def _parse_crop(crop: Sequence[int] | str | None) -> tuple[int, int] | None:
    if crop is None or isinstance(crop, tuple) and not crop:
        return None
    if isinstance(crop, str):
        try:
            top, bottom = (int(v) for v in crop.split(","))
        except ValueError:
            raise ValueError(f"Expected --crop TOP,BOTTOM (two integers). Received: {crop!r}") from None
        return top, bottom
    return int(crop[0]), int(crop[1])


# ----------------------------------------------------------------------------- strategy / precision

def make_strategy(strategy: str):
    """``auto``: MirroredStrategy when several GPUs are visible, else the default strategy."""
    import tensorflow as tf

    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; expected one of: {', '.join(STRATEGIES)}")
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    raise ValueError("strategy='multiworker' runs the custom training loop of e2e_drive.distribute")


def mixed_precision_policy() -> str:
    """``mixed_float16`` on a GPU, ``mixed_bfloat16`` on CPU (float16 matmuls are slow or missing there)."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def _augmentation(augment):
    from data_tools.augment import default_augmentation

    if augment is True:
        return default_augmentation()
    return augment or None


def tensorboard(run_dir: Path) -> list:
    """A TensorBoard callback writing to ``run_dir/logs``, or none when the tensorboard package is absent."""
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorboard") is None:
        from e2e_drive.cli import log

        log("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0)]


# ----------------------------------------------------------------------------- train

def train(
    data: Sequence[str] | DrivingLog,
    out: str,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    activation: str = "elu",
    conv: str = "keras",
    augment: bool | Any = True,
    balance: bool = False,
    seed: int = 0,
    val_fraction: float = 0.2,
    workers: int = 1,
    worker_processes: bool = False,
    crop: Sequence[int] | str | None = None,
    smooth_steering: float = 0.0,
    resume: bool = False,
    early_stopping: int = 5,
    strategy: str = "auto",
    mixed_precision: bool = False,
    verbose: int = 1,
    dropout: float = 0.0,
    cache: str | None = "memory",
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train PilotNet on ``data`` and write the run to ``out``.

    Args:
        data: paths read with ``data_tools.read_log`` or a ``DrivingLog``.
        out: the run directory (created; must not hold a run unless ``resume``).
        epochs: total epochs (a resumed run continues up to this number). Defaults to `10`.
        batch_size: samples per step. Defaults to `64`.
        learning_rate: Adam's learning rate. Defaults to `1e-3`.
        activation, conv: the PilotNet variant (see ``e2e_drive.models.pilotnet``).
        augment: ``True`` for ``data_tools.augment.default_augmentation()`` on training batches,
            ``False`` for none, or a transform of ``data_tools.augment`` (e.g. ``Compose([ChooseCamera()])``).
            Defaults to `True`.
        balance: flatten the steering histogram (``data_tools.balance``). Defaults to `False`.
        seed: the one seed of weights, order and augmentation. Defaults to `0`.
        val_fraction: last fraction of each recording held out (time-ordered). Defaults to `0.2`.
        workers: ``PyDataset`` workers. Defaults to `1`.
        worker_processes: the workers are processes (batches come back through shared memory)
            instead of threads, which share one interpreter lock. Defaults to `False`.
        crop: rows ``(top, bottom)`` (or ``"TOP,BOTTOM"``); defaults to ``default_crop(H)``.
        smooth_steering: Gaussian sigma in frames for the labels; `0` keeps them. Defaults to `0.0`.
        resume: continue the run in ``out`` from ``last.keras``. Defaults to `False`.
        early_stopping: patience in epochs on validation loss; `0` disables. Defaults to `5`.
        strategy: ``auto``, ``mirrored`` or ``multiworker`` (custom loop). Defaults to `"auto"`.
        mixed_precision: ``mixed_float16`` on GPU, ``mixed_bfloat16`` on CPU. Defaults to `False`.
        verbose: Keras progress bars (1), one line per epoch (2) or silent (0). Defaults to `1`.
        dropout: PilotNet's dropout rate. Defaults to `0.0`.
        cache: ``DrivingDataset`` frame cache (``"memory"``, ``"disk"``, ``None``). Defaults to `"memory"`.
        callbacks: extra Keras callbacks, run after the checkpoint. Defaults to `()`.

    Returns:
        a ``TrainResult``.

    Example:
        >>> result = train(["../shared/data/udacity_sim_a"], "runs/udacity", epochs=5)
        >>> result.val_rmse
    """
    import keras

    from data_tools.dataset import DrivingDataset
    from e2e_drive import models

    if strategy == "multiworker":
        from e2e_drive.distribute import train_multiworker

        return train_multiworker(
            data, out, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, activation=activation,
            conv=conv, augment=augment, balance=balance, seed=seed, val_fraction=val_fraction, crop=crop,
            smooth_steering=smooth_steering, resume=resume, verbose=verbose,
        )
    models.check_activation(activation)
    models.check_conv(conv)
    if epochs < 1:
        raise ValueError(f"Expected epochs >= 1. Received: epochs={epochs}")
    crop = _parse_crop(crop)
    run_dir = Path(out)
    if resume:
        if not (run_dir / "state.json").is_file() or not (run_dir / "last.keras").is_file():
            raise ValueError(f"cannot resume: {run_dir} holds no checkpoint (state.json + last.keras)")
    elif (run_dir / "state.json").exists() or (run_dir / "last.keras").exists():
        raise ValueError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another --out")

    keras.utils.set_random_seed(seed)
    log = smooth(load_log(data), smooth_steering)
    train_log, val_log = log.split(val_fraction)
    if balance:
        # Only the training part: validation keeps the true distribution.
        import data_tools

        train_log = data_tools.balance(train_log, seed=seed)
    if len(train_log) == 0:
        raise ValueError(f"val_fraction={val_fraction} leaves no training rows of {len(log)}")

    dist = make_strategy(strategy)
    replicas = dist.num_replicas_in_sync
    # Several replicas split each batch; a last batch smaller than the replica count breaks Keras' fit,
    # so a distributed run keeps whole batches only (the validation batch shrinks to fit the rows).
    train_ds = DrivingDataset(train_log, batch_size, augment=_augmentation(augment),
                              shuffle=True, seed=seed, cache=cache, workers=workers,
                              use_multiprocessing=worker_processes, progress=verbose > 0,
                              drop_remainder=replicas > 1 and len(train_log) >= batch_size)
    val_ds = None
    val_batch = batch_size if replicas == 1 else max(replicas, min(batch_size, len(val_log)) // replicas * replicas)
    if len(val_log) >= replicas:
        val_ds = DrivingDataset(val_log, val_batch, augment=None, shuffle=False, seed=seed, cache=cache,
                                workers=workers, use_multiprocessing=worker_processes, progress=verbose > 0,
                                drop_remainder=replicas > 1)
    frame_shape = train_ds.frame_shape
    where = f"the training data ({train_log.describe(0)})"

    previous_policy = keras.mixed_precision.global_policy().name
    if mixed_precision:
        keras.mixed_precision.set_global_policy(mixed_precision_policy())
    created_dir = not run_dir.exists()
    try:
        with dist.scope():
            if resume:
                model = models.load_model(str(run_dir / "last.keras"), compile=True)
                models.check_fits(model, frame_shape, where)
                state = json.loads((run_dir / "state.json").read_text())
                history = read_history_csv(run_dir / "history.csv")
            else:
                model = models.pilotnet(frame_shape, activation=activation, conv=conv, dropout=dropout, crop=crop,
                                        seed=seed)
                model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse",
                              metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
                state, history = {"epoch": 0}, {}
        initial_epoch = int(state.get("epoch", 0))
        saved_config = json.loads((run_dir / "config.json").read_text()) if resume else {}
        if resume and saved_config.get("batch_size") == batch_size and saved_config.get("num_train") == len(train_log):
            # last.keras is the truth: a kill between its replace and state.json's leaves state one epoch behind.
            initial_epoch = max(initial_epoch, int(model.optimizer.iterations.numpy()) // len(train_ds))
            history = {k: v[:initial_epoch] for k, v in history.items()}
            state["epoch"] = initial_epoch
        config = dict(
            data=[str(train_log.source[0])] if isinstance(data, DrivingLog) else [os.fspath(p) for p in data],
            epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, activation=activation, conv=conv,
            augment=augment if isinstance(augment, bool) else repr(augment), balance=balance, seed=seed,
            val_fraction=val_fraction, workers=workers, worker_processes=worker_processes,
            crop=list(model.get_layer("preprocess").crop) if "preprocess" in [l.name for l in model.layers] else None,
            smooth_steering=smooth_steering, early_stopping=early_stopping, strategy=strategy,
            mixed_precision=mixed_precision, policy=keras.mixed_precision.global_policy().name,
            frame_shape=list(frame_shape), num_train=len(train_log), num_val=len(val_log),
            num_params=int(model.count_params()),
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_atomic(run_dir / "config.json", json.dumps(config, indent=2))
        if initial_epoch >= epochs or state.get("stopped_early"):
            seconds = 0.0
        else:
            callbacks = [_checkpoint_callback_class()(run_dir, history, state, early_stopping), *tensorboard(run_dir),
                         *callbacks]
            # The dataset serves epoch ``e`` of its seed during fit's epoch ``e``, also after a resume.
            train_ds.set_epoch(initial_epoch)
            start = time.perf_counter()
            # The dataset orders its rows per epoch from the seed; fit's own shuffle would reorder the
            # batches with Python's unseeded global `random`, and the same seed would train differently.
            model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
                      callbacks=callbacks, verbose=verbose, shuffle=False)
            seconds = time.perf_counter() - start
    except BaseException:
        # A run that failed before its first checkpoint leaves nothing half-written behind.
        if created_dir and run_dir.exists() and not (run_dir / "state.json").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    val_rmse = float(np.sqrt(state["best"])) if "val_loss" in history and "best" in state else float("nan")
    return TrainResult(
        run_dir=str(run_dir),
        best_model_path=str(run_dir / "best.keras"),
        last_model_path=str(run_dir / "last.keras"),
        history=history,
        val_rmse=val_rmse,
        train_seconds=seconds,
        num_train=len(train_log),
        num_val=len(val_log),
        epochs_run=int(state.get("epoch", 0)),
        stopped_early=bool(state.get("stopped_early", False)),
    )
