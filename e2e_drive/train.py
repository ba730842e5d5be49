"""Train PilotNet on driving logs: ``e2e_drive.train.train`` (what ``e2e-drive train`` calls).

One trainer for every strategy. ``train`` validates the options (``TrainConfig``), takes the run folder's
lock (``RunDir``), reads the data, builds the datasets, the model and the callbacks once; the strategy only
changes how a step runs:

* one device and ``MirroredStrategy`` (``strategy="auto"``/``"mirrored"``): Keras' ``model.fit``;
* ``MultiWorkerMirroredStrategy`` (``strategy="multiworker"``, configured by ``TF_CONFIG``): a loop that runs
  Keras' own ``train_step`` (fit's step: the same losses, optimizer, batches and callbacks) in ``strategy.run``,
  because Keras 3's ``fit`` fails under it
  ("Attempt to convert a value (PerReplica...)", keras-team/keras#20585). Worker ``k`` of ``n`` trains on
  rows ``k::n`` of the training split (and decodes only those), ``batch_size`` rows per step; gradients are
  summed over the workers and scaled by the global batch. Worker 0 (the chief) writes the run folder.

``targets=("steering", "throttle")`` trains a two-head PilotNet (``pilotnet(outputs=...)``) on the logs' throttle
too: one MSE per head, summed with ``loss_weights``. The history then holds ``loss`` (the weighted sum) and
``steering_loss``, ``steering_rmse``, ``throttle_loss``, ``throttle_rmse`` (and their ``val_`` versions) under
every strategy; a steering-only run keeps ``loss``, ``rmse``, ``val_loss``, ``val_rmse``.

Run a multi-worker job with one command per machine (the same DATA on each, the same --out on a shared
file system when resuming):

    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}' \\
        e2e-drive train DATA --out runs/mw --strategy multiworker
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import textwrap
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from data_tools.log import DrivingLog
from e2e_drive.closed_loop import AUTONOMY, ClosedLoopSpec, autonomy_callback, closed_loop_check, validation_spec
from e2e_drive.heap_padding import pad_the_heap
from e2e_drive.recipe import epoch_repeat, learning_rate, recipe_augmentation, training_camera, with_car
from e2e_drive.run_dir import CLOSED_LOOP, CLOSED_LOOP_PLOT, STATE, RunDir, RunDirError
from e2e_drive.time_split import TimeSplit
from e2e_drive.train_config import STRATEGIES, TrainConfig, flag

log = logging.getLogger(__name__)

__all__ = ["STRATEGIES", "TrainResult", "TrainingDiverged", "make_strategy", "mixed_precision_policy", "train",
           "worker_info"]


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite; the run keeps its last good checkpoint."""


@dataclass
class TrainResult:
    """What a training run produced (``model``: the trained model, on every worker; not in ``to_dict``)."""

    run_dir: str
    best_model_path: str
    last_model_path: str
    history: dict[str, list[float]] = field(default_factory=dict)
    # Steering RMSE on the validation rows at the selected epoch (select_by), and the throttle's when trained.
    val_rmse: float | None = None
    val_throttle_rmse: float | None = None
    train_seconds: float = 0.0
    num_train: int = 0
    num_val: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    cache: str = "none"
    # best.keras driven closed loop through the validation span (``closed_loop_check``), or {"skipped": why};
    # None without validation rows or with check_closed_loop=False.
    closed_loop: dict[str, Any] | None = None
    # Where this call's wall time went (``e2e_drive.time_split.TimeSplit.to_dict``), also in time_split.json.
    time_split: dict[str, Any] | None = None
    model: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "model"}


# ----------------------------------------------------------------------------- strategy / precision

def make_strategy(strategy: str):
    """``auto``: MirroredStrategy when several GPUs are visible, else the default strategy;
    ``mirrored``: MirroredStrategy over the local devices; ``multiworker``: MultiWorkerMirroredStrategy
    (``TF_CONFIG``; created before any other TensorFlow work, as it requires)."""
    import tensorflow as tf

    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "multiworker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


MAX_AUTO_WORKERS = 8


def batch_workers(requested: int | None, gpus: int | None = None, cores: int | None = None) -> tuple[int, str]:
    """``--workers``: the number asked for, or for ``auto`` (``None``) the number for this machine, with why.

    On CPUs alone the step and the batch makers share the cores: the recipe's augmentation on one thread makes
    batches 2.6-3.9x faster than PilotNet's CPU step consumes them (BENCHMARKS.md, ``e2e-drive bench train``),
    and a second worker gained 5-6 % on 2 cores, so one worker leaves the step the most. A GPU's step is an order
    of magnitude faster and leaves the cores to the batch makers: one per core but one (the one that feeds the
    GPU), at most ``MAX_AUTO_WORKERS``.
    """
    if requested is not None:
        return int(requested), "--workers"
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_logical_devices("GPU"))
    cores = cores or os.cpu_count() or 1
    if not gpus:
        return 1, "auto: no GPU, the step needs the cores"
    workers = max(1, min(MAX_AUTO_WORKERS, cores - 1))
    return workers, f"auto: {gpus} GPU(s), {cores} cores: one per core but one"


def check_tf_config(text: str | None) -> None:
    """A ``ValueError`` naming ``TF_CONFIG`` when it is set but TensorFlow could not use it (TensorFlow's own
    messages about a malformed one come much later, or never: a worker then waits for a cluster that is not)."""
    if not text:
        return  # no cluster: one local worker
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG: not JSON ({error.msg} at character {error.pos})") from None
    example = '(e.g. {"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}})'
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG: expected an object with a \"cluster\" and a \"task\" object {example}")
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and re.fullmatch(r"(\[[^\]]+\]|[^\s:\[\]]+):\d{1,5}", a) for a in addresses):
            raise ValueError(f"TF_CONFIG: cluster {role!r} must be a list of \"host:port\" addresses, got "
                             f"{addresses!r:.120}")
    role, index = task.get("type"), task.get("index")
    if role not in cluster:
        raise ValueError(f"TF_CONFIG: task type {role!r} is not a role of the cluster ({', '.join(cluster)})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[role]):
        raise ValueError(f"TF_CONFIG: task index {index!r} is not one of the {len(cluster[role])} {role} "
                         f"address(es) (0..{len(cluster[role]) - 1})")


def worker_info(strategy) -> tuple[int, int]:
    """``(worker index, number of workers)`` of this process (``(0, 1)`` outside a multi-worker cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0, 1
    return int(resolver.task_id or 0), int(resolver.cluster_spec().num_tasks("worker"))


def mixed_precision_policy() -> str:
    """``mixed_float16`` on a GPU, ``mixed_bfloat16`` on CPU (float16 matmuls are slow or missing there)."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


# ----------------------------------------------------------------------------- options

def data_paths(data: Sequence[str] | str | os.PathLike | DrivingLog) -> tuple[str, ...]:
    """What ``config.json`` records as the data: the paths, or a ``DrivingLog``'s source files."""
    if isinstance(data, DrivingLog):
        return tuple(dict.fromkeys(str(s) for s in data.source))
    if isinstance(data, (str, os.PathLike)):
        return (os.fspath(data),)
    return tuple(os.fspath(p) for p in data)


def _resolve_config(run: RunDir, data, resume: bool, overwrite: bool, options: dict[str, Any]):
    """The run's ``TrainConfig`` and the augmentation transform (``None``: none)."""
    unknown = sorted(set(options) - set(TrainConfig.option_names()))
    if unknown:
        raise TypeError(f"train() got unknown option(s) {', '.join(unknown)}; expected some of "
                        f"{', '.join(n for n in TrainConfig.option_names() if n != 'data')}")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite: choose one (continue the run, or replace it)")
    given = dict(options)
    transform = None
    if "augment" in given and not isinstance(given["augment"], (bool, str)):
        transform = given["augment"]
        given["augment"] = repr(transform)
    if data is not None:
        given["data"] = data_paths(data)
    if resume:
        run.check_resumable()
        saved = run.read_config()
        differences = saved.resume_differences(given)
        if differences:
            raise RunDirError(f"{run}: cannot resume with options other than the run's: " + "; ".join(differences) +
                              f" [only {', '.join(flag(n) for n in TrainConfig.resumable())} may change on resume; "
                              "drop the others, or start a new --out]")
        config = saved.replace(**{k: v for k, v in given.items() if k in TrainConfig.resumable()})
    else:
        config = TrainConfig(**given)
    if transform is None and isinstance(config.augment, str):
        raise ValueError(f"{flag('augment')}: the run was trained with the custom transform {config.augment}; "
                         "pass the same transform again (augment=...)")
    return config, transform


def _refuse_unsupported(config: TrainConfig, strategy, num_workers: int) -> None:
    """Every option works under every strategy, except these (refused with the option and the strategy)."""
    if config.strategy != "multiworker":
        return
    if config.worker_processes:
        raise ValueError(f"{flag('worker_processes')}: not supported with --strategy multiworker (its training "
                         "loop reads batches through tf.data in threads; use --workers N)")
    local = strategy.num_replicas_in_sync // max(1, num_workers)
    if local != 1:
        raise ValueError(f"--strategy multiworker: each worker must train on one device, this one has {local} "
                         "(give each worker process one GPU with CUDA_VISIBLE_DEVICES)")


# ----------------------------------------------------------------------------- data

def _split(config: TrainConfig, data_log: DrivingLog) -> tuple[DrivingLog, DrivingLog, DrivingLog]:
    """The training rows and the validation rows (labels smoothed as the recipe asks), and the validation rows
    with their recorded labels: replay rebuilds the driven path from the steering, and the path is what was
    driven, not the smoothed labels the model learns (``e2e-drive replay`` does the same)."""
    import data_tools
    from data_tools.smoothing import keyboard_smoothing, smooth_steering_seconds

    is_val = data_log.validation_rows(config.val_fraction)
    labelled = data_log
    if config.smooth_steering:
        labelled = data_tools.smooth_steering(data_log, config.smooth_steering)
    elif config.smooth_seconds is None:
        labelled = keyboard_smoothing(data_log)  # only recordings whose labels look keyboard-driven
    elif config.smooth_seconds:
        labelled = smooth_steering_seconds(data_log, config.smooth_seconds)
    train_log, val_log = labelled[~is_val], labelled[is_val]
    if config.val_fraction > 0 and len(val_log) == 0:
        recordings = len(data_log.recordings)
        raise ValueError(
            f"{flag('val_fraction')}: {config.val_fraction:g} of {len(data_log)} rows "
            f"({recordings} recording{'s' if recordings != 1 else ''}) leaves no validation rows (each recording "
            "holds out round(rows x fraction)); give more data, a larger --val-fraction, or --val-fraction 0 to "
            "train without validation")
    if config.balance:
        # Only the training part: validation keeps the true distribution.
        train_log = data_tools.balance(train_log, seed=config.seed)
    if len(train_log) == 0:
        raise ValueError(f"{flag('val_fraction')}: {config.val_fraction:g} leaves no training rows of {len(data_log)}")
    return train_log, val_log, data_log[is_val]


def _resolve_crop(config: TrainConfig, data_log: DrivingLog, camera) -> TrainConfig:
    """The run's crop, before decoding every frame: a given crop that cannot fit fails in a second, not after
    minutes; without ``--crop``, a camera that sees no bonnet keeps the bottom rows (``camera_crop``)."""
    if not len(data_log):
        return config
    from data_tools.frames import image_size
    from data_tools.preprocess import check_crop
    from e2e_drive.recipe import camera_crop

    try:
        height = image_size(data_log.images["center"][0])[1]
    except (ValueError, OSError):
        return config  # an unreadable first frame: decoding names it with its row
    if config.crop is not None:
        check_crop(height, config.crop)
        return config
    crop = camera_crop(camera, height)
    if crop is None:
        return config
    log.info("crop %d,%d: the %s camera sees no bonnet, so the bottom rows stay (--crop to choose)", *crop,
             config.car)
    return config.replace(crop=crop)


def _cache_mode(config: TrainConfig, logs: Sequence[DrivingLog], cameras, memory_budget: int | None) -> str:
    if config.cache != "auto":
        return config.cache
    from data_tools.frame_cache import choose_cache_mode, default_cache_dir

    mode, why = choose_cache_mode(DrivingLog.concat([lg for lg in logs if len(lg)]), cameras, memory_budget)
    where = "memory" if mode == "memory" else f"disk under {config.cache_dir or default_cache_dir()}"
    log.info("frame cache: %s (%s)", where, why)
    return mode


# ----------------------------------------------------------------------------- progress and checkpoints

# The monitor of select_by="last": best.keras is the last epoch, and nothing stops early.
LAST_EPOCH = "last_epoch"


def best_epoch(history: dict[str, list[float]], monitor: str) -> int | None:
    """Index of the best epoch: the lowest ``monitor``; for ``val_autonomy`` the highest, ties (autonomy counts
    whole interventions, so epochs often tie) broken by the lowest ``val_loss``; for ``LAST_EPOCH`` the last."""
    values = _monitored(history, monitor)
    if not values:
        return None
    if monitor == LAST_EPOCH:
        return len(values) - 1
    if monitor == AUTONOMY:
        loss = history.get("val_loss", [0.0] * len(values))
        return min(range(len(values)), key=lambda i: (-values[i], loss[i]))
    return int(np.argmin(values))


def _monitored(history: dict[str, list[float]], monitor: str) -> list[float]:
    """The per-epoch values selection reads: ``monitor``'s, or for ``LAST_EPOCH`` the training loss's."""
    return history.get("loss" if monitor == LAST_EPOCH else monitor, [])


def progress_state(history: dict[str, list[float]], monitor: str, patience: int, epochs: int) -> dict[str, Any]:
    """``state.json``: the last finished epoch and the early-stopping counters, all derived from the history
    (so they are right after any resume)."""
    values = _monitored(history, monitor)
    state: dict[str, Any] = {"epoch": len(values), "epochs": epochs, "monitor": monitor}
    if values:
        best = best_epoch(history, monitor)
        state.update(best=float(values[best]), best_epoch=best + 1, wait=len(values) - best - 1)
    state["stopped_early"] = bool(patience and monitor != LAST_EPOCH and state.get("wait", 0) >= patience)
    return state


def _checkpoint_callback(run: RunDir, history: dict[str, list[float]], monitor: str, config: TrainConfig,
                         writes: bool):
    import keras

    class RunCheckpoint(keras.callbacks.Callback):
        """Stops on a NaN/inf loss before it reaches a checkpoint; each epoch writes (on the chief)
        ``best.keras`` on improvement, ``last.keras``, ``state.json``, ``history.csv``, ``loss.png`` and
        ``config.json`` as one step (``RunDir.write_epoch``), and stops early after ``patience``
        epochs without improvement. Early stopping lives here, not in ``keras.callbacks.EarlyStopping``,
        so its counters survive a resume."""

        def __init__(self):
            super().__init__()
            self.saved_epoch = len(history.get(monitor, []))
            self.epoch = self.saved_epoch

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs=None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self._diverged("training loss", float(loss), f"epoch {self.epoch + 1}, step {batch + 1}")

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            logs = {k: float(v) for k, v in (logs or {}).items()}
            _exact_head_losses(logs, config.targets)
            for key, value in logs.items():
                if not math.isfinite(value):
                    self._diverged(key.replace("_", " "), value, f"the end of epoch {epoch + 1}")
            if not all(np.isfinite(w).all() for w in self.model.get_weights()):
                self._diverged("a weight", float("nan"), f"the end of epoch {epoch + 1}")
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            state = progress_state(history, monitor, config.early_stopping, config.epochs)
            if writes:
                improved = state["best_epoch"] == epoch + 1 or not run.best_path.exists()
                run.write_epoch(self.model, history, state, config, improved)
            self.saved_epoch = epoch + 1
            if state["stopped_early"]:
                log.info("%s: no %s improvement for %d epochs: stopping early after epoch %d", run, monitor,
                         config.early_stopping, epoch + 1)
                self.model.stop_training = True

        def _diverged(self, what: str, value: float, when: str) -> None:
            kept = (f"kept best.keras/last.keras of epoch {self.saved_epoch}" if self.saved_epoch
                    else "no epoch finished, so no checkpoint was written")
            raise TrainingDiverged(f"{run}: {what} became {value} at {when}; {kept} (try a lower --lr than "
                                   f"{config.learning_rate:g})")

    return RunCheckpoint()


def _exact_head_losses(logs: dict[str, float], targets: tuple[str, ...]) -> None:
    """Set each head's ``<target>_loss`` (and ``val_``) to its RMSE squared: the MSE over every row of the epoch.

    Keras' per-output loss logs of a multi-output model average the batches' means unweighted, so a smaller last
    batch counts as much as a full one (``loss`` and the RMSE metrics weigh every row the same); the history
    and the multi-worker loop then agree on one definition."""
    if targets == ("steering",):
        return
    for prefix in ("", "val_"):
        for target in targets:
            rmse = logs.get(f"{prefix}{target}_rmse")
            if rmse is not None and f"{prefix}{target}_loss" in logs:
                logs[f"{prefix}{target}_loss"] = rmse * rmse


def _tensorboard(run: RunDir) -> list:
    """A TensorBoard callback writing to ``run/logs``, or none when the tensorboard package is absent."""
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorboard") is None:
        log.info("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(str(run.logs_path), write_graph=False, profile_batch=0)]


def _best_val_rmse(history: dict[str, list[float]], monitor: str, targets: tuple[str, ...]) -> dict[str, float]:
    """Validation RMSE of each target at the best epoch (by ``monitor``); empty without validation."""
    best = best_epoch(history, monitor)
    if best is None or monitor == "loss" or len(history.get("val_loss", [])) <= best:
        return {}
    if targets == ("steering",):
        return {"steering": math.sqrt(history["val_loss"][best])}
    return {t: history[f"val_{t}_rmse"][best] for t in targets}


# ----------------------------------------------------------------------------- steps

def _compile(model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Adam and MSE; with several targets one MSE per head, weighted by ``loss_weights``, and an RMSE per head."""
    import keras

    optimizer = keras.optimizers.Adam(learning_rate(config, steps_per_epoch))
    if config.targets == ("steering",):
        model.compile(optimizer=optimizer, loss="mse", metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
        return
    model.compile(optimizer=optimizer, loss={t: "mse" for t in config.targets}, loss_weights=config.weights,
                  metrics={t: [keras.metrics.RootMeanSquaredError(name="rmse")] for t in config.targets})


def _fit(model, train_ds, val_ds, config: TrainConfig, initial_epoch: int, callbacks: list, verbose: int) -> None:
    # The dataset serves epoch ``e`` of its seed during fit's epoch ``e``, also after a resume. fit's own shuffle
    # would reorder the batches with Python's unseeded global `random`: the dataset orders them from the seed.
    train_ds.set_epoch(initial_epoch)
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=initial_epoch,
              callbacks=callbacks, verbose=verbose, shuffle=False)


def _by_target(values, targets: tuple[str, ...]) -> dict:
    """A model's outputs or a batch's labels as ``{target: values}`` (a steering-only one is a bare array)."""
    return dict(values) if isinstance(values, dict) else {targets[0]: values}


def _epoch_logs(mean_losses: dict[str, float], weights: dict[str, float], prefix: str = "") -> dict[str, float]:
    """The logs ``fit`` writes, from each target's mean squared error: ``loss`` and ``rmse`` for steering alone,
    else ``loss`` (the weighted sum) and ``<target>_loss``, ``<target>_rmse`` per target."""
    if list(mean_losses) == ["steering"]:
        loss = mean_losses["steering"]
        return {f"{prefix}loss": loss, f"{prefix}rmse": math.sqrt(max(loss, 0.0))}
    logs = {f"{prefix}loss": sum(weights[t] * value for t, value in mean_losses.items())}
    for target, value in mean_losses.items():
        logs[f"{prefix}{target}_loss"] = value
        logs[f"{prefix}{target}_rmse"] = math.sqrt(max(value, 0.0))
    return logs


def _custom_loop(model, strategy, train_ds, val_ds, steps: int, config: TrainConfig, initial_epoch: int,
                 callbacks: list, verbose: int, validate: bool) -> None:
    """fit's step under MultiWorkerMirroredStrategy, in ``strategy.run``, driving the same callbacks as ``fit``."""
    import keras
    import tensorflow as tf

    targets, weights = config.targets, config.weights

    @tf.function
    def train_step(frames, labels):
        # Keras' own train_step, the one fit runs: the compiled losses and loss weights, the regularization
        # losses, the mixed-precision loss scaling and the cross-replica gradient sum are fit's. Each replica
        # returns its running metrics over the same number of rows, so their mean is the global one.
        logs = strategy.run(model.train_step, args=((frames, labels),))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for name, value in logs.items()}

    @tf.function
    def all_reduce_sum(values):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(values,)), axis=None)

    callback_list = keras.callbacks.CallbackList(callbacks, add_progbar=verbose > 0, model=model, verbose=verbose,
                                                 epochs=config.epochs, steps=steps)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, config.epochs):
        callback_list.on_epoch_begin(epoch)
        model.reset_metrics()
        logs: dict[str, float] = {}
        # fit's epoch e serves the dataset's epoch e + 1 (its iterator resets the dataset once before the first
        # epoch): the same batches here, so one worker trains exactly what one device does.
        batches = train_ds.to_tf_dataset(epochs=1, first_epoch=epoch + 1,
                                         parallel_calls=train_ds.workers).take(steps)
        for step, (frames, labels) in enumerate(batches):
            callback_list.on_train_batch_begin(step)
            logs = {name: float(value) for name, value in train_step(frames, labels).items()}
            callback_list.on_train_batch_end(step, logs)
        if validate:
            callback_list.on_test_begin()  # as fit does around its validation
            # Each worker scores its own validation rows with its (identical) weights; one all-reduce sums them
            # (every worker takes part, also one whose share of the rows is empty).
            local = np.zeros(len(targets) + 1, np.float64)  # squared errors per target, then the row count
            for i in range(len(val_ds) if val_ds is not None else 0):
                frames, labels = val_ds[i]
                labels = _by_target(labels, targets)
                outputs = _by_target(model(frames, training=False), targets)
                for k, target in enumerate(targets):
                    prediction = np.asarray(outputs[target], np.float64).reshape(-1)
                    local[k] += np.sum(np.square(prediction - labels[target]))
                local[-1] += len(labels["steering"])
            *squared, count = np.asarray(all_reduce_sum(tf.constant(local)))
            logs.update(_epoch_logs({t: float(sq / count) for t, sq in zip(targets, squared)}, weights, "val_"))
            callback_list.on_test_end(logs)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()


# ----------------------------------------------------------------------------- the plan of a run

@dataclass
class RunPlan:
    """What a run will train, decided before anything is written (``plan_run``); ``execute`` trains it."""

    config: TrainConfig  # the car resolved, the recorded fields (frame shape, row counts) filled in
    transform: Any  # the training augmentation, or None
    strategy: Any
    worker: int
    num_workers: int
    camera: Any  # the run's camera (``training_camera``), resolved once for the augmentation and the checks
    train_log: DrivingLog  # this worker's training rows (all of them on one machine)
    val_log: DrivingLog  # this worker's validation rows
    recorded_val: DrivingLog  # the whole validation span with its recorded labels, for closed-loop driving
    train_ds: Any
    val_ds: Any
    cache: str
    steps: int  # optimizer steps per epoch
    custom_loop: bool  # the strategy.run loop of MultiWorkerMirroredStrategy, else model.fit
    validates: bool
    monitor: str  # what selects best.keras: AUTONOMY, "val_loss", "loss" or LAST_EPOCH
    # The validation span driven closed loop (each epoch for AUTONOMY, and when the run ends), or why not.
    closed_loop: ClosedLoopSpec | None = None
    closed_loop_skipped: str | None = None

    @property
    def chief(self) -> bool:
        return self.worker == 0

    @property
    def verbose(self) -> int:
        return self.config.verbose if self.chief else 0


def _validation_batch(config: TrainConfig, val_log: DrivingLog, replicas: int, custom_loop: bool) -> int:
    if custom_loop or replicas == 1:
        return config.batch_size
    if len(val_log) < replicas:
        raise ValueError(f"{flag('val_fraction')}: {len(val_log)} validation rows cannot feed {replicas} "
                         "replicas; give more data or a larger --val-fraction")
    # Several replicas split each batch: whole batches only, shrunk to fit the validation rows.
    return max(replicas, min(config.batch_size, len(val_log)) // replicas * replicas)


def _read_data(config: TrainConfig, data):
    """The training log: every row good, or with ``--skip-bad`` the good ones while the bad are few enough."""
    from data_tools import DataError, load_log

    data_log = load_log(data, on_error="skip" if config.skip_bad else "raise")
    bad = len(data_log.skipped)
    if bad:
        fraction = bad / (bad + len(data_log))
        if fraction > config.max_bad:
            raise DataError(f"{bad} of {bad + len(data_log)} rows are bad ({100 * fraction:.1f}%, more than --max-bad "
                            f"{config.max_bad:g}); first: {data_log.skipped[0]} (e2e-drive data check lists them)",
                            path="--skip-bad")
        log.warning("left out %d bad rows of %d (%.1f%%, --skip-bad); first: %s", bad, bad + len(data_log),
                    100 * fraction, data_log.skipped[0])
    if "throttle" in config.targets:
        unrecorded = np.flatnonzero(~np.isfinite(data_log.throttle))
        if len(unrecorded):
            raise DataError(f"{len(unrecorded)} of {len(data_log)} rows record no throttle (first: "
                            f"{data_log.describe(int(unrecorded[0]))}); train --targets steering, or record the "
                            "throttle", path="--targets")
    return data_log


def plan_run(config: TrainConfig, data: Sequence[str] | str | os.PathLike | DrivingLog, strategy, *,
             transform: Any = None, memory_budget: int | None = None) -> RunPlan:
    """Decide a run without writing anything: the data read and split once, the car and camera resolved once,
    this worker's shard, the datasets, the step counts and what selects ``best.keras``.

    ``transform`` replaces the recipe's augmentation (``config.augment=True``); ``memory_budget`` is the bytes
    ``cache="auto"`` may keep in memory. Raises ``ValueError`` naming the flag when the data cannot feed the
    options (no validation or training rows, no full batch, a crop that does not fit, a camera of another size).
    """
    from data_tools.dataset import DrivingDataset

    worker, num_workers = worker_info(strategy)
    data_log = _read_data(config, data)
    if config.car is None:
        config = with_car(config, data_log)
        log.info("car profile %s (from the data; --car to choose)", config.car)
    # Resolved now: a calibration of another frame size fails before any epoch.
    camera = training_camera(config, data_log) if len(data_log) else None
    config = _resolve_crop(config, data_log, camera)
    full_train, full_val, recorded_val = _split(config, data_log)
    if transform is None and config.augment is True:
        transform = recipe_augmentation(config, full_train, camera=camera)
    train_log, val_log = full_train, full_val
    if num_workers > 1:
        # Each worker trains on (and decodes) its own rows; the smallest share sets the steps of all.
        train_log, val_log = full_train[worker::num_workers], full_val[worker::num_workers]
    cameras = full_train.cameras if getattr(transform, "chooses_camera", False) else ("center",)
    cache = _cache_mode(config, (train_log, val_log), cameras, memory_budget)

    replicas = strategy.num_replicas_in_sync
    custom_loop = config.strategy == "multiworker"
    drop_remainder = replicas > 1
    if drop_remainder and len(train_log) < config.batch_size * (num_workers if custom_loop else 1):
        raise ValueError(f"{flag('batch_size')}: {len(full_train)} training rows make no full batch of "
                         f"{config.batch_size} per worker for {num_workers} worker(s) x "
                         f"{replicas // num_workers} device(s); lower --batch-size")
    seed = config.seed if worker == 0 else int(np.random.SeedSequence([config.seed, worker]).generate_state(1)[0])
    verbose = config.verbose if worker == 0 else 0
    workers, why = batch_workers(config.workers)
    log.info("%d batch worker(s) (%s)", workers, why)
    dataset_args = dict(seed=seed, cache=cache, cache_dir=config.cache_dir, workers=workers,
                        use_multiprocessing=config.worker_processes, progress=verbose > 0, targets=config.targets)
    repeat = epoch_repeat(config, len(full_train))
    if repeat > 1:
        log.info("an epoch serves each of the %d training rows %d times (--epoch-samples %d)", len(full_train),
                 repeat, len(full_train) * repeat)
    train_ds = DrivingDataset(train_log, config.batch_size, augment=transform, shuffle=True, repeat=repeat,
                              drop_remainder=drop_remainder, **dataset_args)
    val_ds = None
    if len(full_val):
        val_batch = _validation_batch(config, val_log, replicas, custom_loop)
        if len(val_log):
            val_ds = DrivingDataset(val_log, val_batch, augment=None, shuffle=False,
                                    drop_remainder=drop_remainder and not custom_loop, **dataset_args)
    steps = (len(full_train) * repeat // num_workers) // config.batch_size if custom_loop else len(train_ds)
    if steps < 1:
        raise ValueError(f"{flag('batch_size')}: {len(full_train)} training rows make no full batch of "
                         f"{config.batch_size} for each of {num_workers} workers; lower --batch-size")

    validates = val_ds is not None or bool(custom_loop and len(full_val))
    monitor = "val_loss" if validates else "loss"
    spec, why = (validation_spec(config, recorded_val, camera, train_ds.frame_shape) if validates and worker == 0
                 else (None, "no validation rows" if not validates else "not the chief worker"))
    if config.select_by == "autonomy" and validates:
        if spec is not None:
            monitor = AUTONOMY
        else:
            log.warning("%s autonomy: %s: selecting by val_loss", flag("select_by"), why)
    elif config.select_by == "last":
        monitor = LAST_EPOCH
    config = config.replace(frame_shape=train_ds.frame_shape, num_train=len(full_train), num_val=len(full_val))
    return RunPlan(config=config, transform=transform, strategy=strategy, worker=worker, num_workers=num_workers,
                   camera=camera, train_log=train_log, val_log=val_log, recorded_val=recorded_val,
                   train_ds=train_ds, val_ds=val_ds, cache=cache, steps=steps, custom_loop=custom_loop,
                   validates=validates, monitor=monitor, closed_loop=spec, closed_loop_skipped=why)


# ----------------------------------------------------------------------------- executing a plan

def _model(plan: RunPlan, run: RunDir, resume: bool):
    """The run's model under its strategy: ``last.keras`` on resume (checked against the plan), else a new one."""
    from e2e_drive import models

    config = plan.config
    where = f"the training data ({plan.train_log.describe(0)})"
    with plan.strategy.scope():
        if resume:
            model = models.load_model(run.last_path, compile=True)
            models.check_fits(model, config.frame_shape, where)
            if models.output_names(model) != config.targets:
                raise RunDirError(f"{run.last_path}: the model has outputs {','.join(models.output_names(model))} "
                                  f"but {run.file('config.json')} trains --targets {','.join(config.targets)}; "
                                  "the run folder is damaged: start a new --out")
            if config.lr_schedule != "constant":  # the schedule of the epochs asked for now
                model.optimizer.learning_rate = learning_rate(config, plan.steps)
        else:
            model = models.pilotnet(config.frame_shape, activation=config.activation, conv=config.conv,
                                    dropout=config.dropout, crop=config.crop, seed=config.seed,
                                    outputs=config.targets)
            _compile(model, config, plan.steps)
        if plan.custom_loop and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    return model


def _resumed_history(run: RunDir, model, steps: int) -> tuple[dict[str, list[float]], int]:
    """The history of a resumed run and the epoch it goes on from. ``last.keras`` is the truth: a run killed
    between its files has trained as many epochs as its optimizer."""
    history = run.read_history()
    run.read_state()  # a damaged state.json is an error; its counters are derived from the history
    initial_epoch = int(model.optimizer.iterations.numpy()) // steps
    if any(len(v) < initial_epoch for v in history.values()) or not history:
        raise RunDirError(f"{run.file('history.csv')}: holds fewer epochs than last.keras has trained "
                          f"({initial_epoch}); the run folder is damaged: start a new --out")
    return {k: v[:initial_epoch] for k, v in history.items()}, initial_epoch


def execute(plan: RunPlan, run: RunDir, *, resume: bool = False, callbacks: Sequence[Any] = (),
            check_closed_loop: bool = True, split: TimeSplit | None = None) -> TrainResult:
    """Train ``plan`` into ``run`` (the chief holds its lock: ``train`` calls this inside ``run.lock()``): the model
    built or resumed, the epochs left, then the closed-loop check of ``best.keras``. ``split`` times the parts
    (a new one, from now, when not given)."""
    import keras

    config, chief = plan.config, plan.chief
    split = split or TimeSplit()
    previous_policy = keras.mixed_precision.global_policy().name
    try:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy(mixed_precision_policy())
        model = _model(plan, run, resume)
        history, initial_epoch = _resumed_history(run, model, plan.steps) if resume else ({}, 0)
        state = progress_state(history, plan.monitor, config.early_stopping, config.epochs)
        if chief and not resume:
            run.write_config(config)  # a resumed run's config changes with its next epoch, never before

        seconds = 0.0
        if initial_epoch < config.epochs and not state["stopped_early"]:
            checkpoint = _checkpoint_callback(run, history, plan.monitor, config, writes=chief)
            scoring = [autonomy_callback(plan.closed_loop)] if plan.monitor == AUTONOMY else []
            first, last = split.callbacks()
            all_callbacks = [first, *scoring, checkpoint, *(_tensorboard(run) if chief else []), *callbacks, last]
            batches_before = plan.train_ds.batch_seconds
            start = time.perf_counter()
            if plan.custom_loop:
                _custom_loop(model, plan.strategy, plan.train_ds, plan.val_ds, plan.steps, config, initial_epoch,
                             all_callbacks, plan.verbose, validate=plan.validates)
            else:
                _fit(model, plan.train_ds, plan.val_ds, config, initial_epoch, all_callbacks, plan.verbose)
            seconds = time.perf_counter() - start
            split.batch_seconds = None if config.worker_processes else plan.train_ds.batch_seconds - batches_before
            split.batch_workers = plan.train_ds.workers
            state = progress_state(history, plan.monitor, config.early_stopping, config.epochs)
        closed_loop = None
        if check_closed_loop and chief and config.num_val and run.best_path.exists():
            for stale in (CLOSED_LOOP, CLOSED_LOOP_PLOT):
                run.file(stale).unlink(missing_ok=True)  # never a check of another best.keras
            if plan.closed_loop is None:
                log.debug("no closed-loop check of the validation span: %s", plan.closed_loop_skipped)
                closed_loop = {"skipped": plan.closed_loop_skipped}
            else:
                with split.part("closed_loop"):
                    closed_loop = closed_loop_check(plan.closed_loop, run.best_path,
                                                    plot=run.file(CLOSED_LOOP_PLOT), progress=plan.verbose > 0)
            if "skipped" not in closed_loop:
                run.write_closed_loop(closed_loop)  # under the lock, with the model it scores
        time_split = split.to_dict()
        if chief:
            run.write_time_split(time_split)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    best_rmse = _best_val_rmse(history, plan.monitor, config.targets)
    return TrainResult(
        run_dir=str(run.path),
        best_model_path=str(run.best_path),
        last_model_path=str(run.last_path),
        history=history,
        val_rmse=best_rmse.get("steering"),
        val_throttle_rmse=best_rmse.get("throttle"),
        train_seconds=seconds,
        num_train=config.num_train,
        num_val=config.num_val,
        epochs_run=int(state["epoch"]),
        stopped_early=bool(state["stopped_early"]),
        cache=plan.cache,
        closed_loop=closed_loop,
        time_split=time_split,
        model=model,
    )


# ----------------------------------------------------------------------------- train

def train(
    data: Sequence[str] | str | os.PathLike | DrivingLog | None,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
    memory_budget: int | None = None,
    check_closed_loop: bool = True,
    **options: Any,
) -> TrainResult:
    """Train PilotNet on ``data`` and write the run to ``out``.

    Args:
        data: paths read with ``data_tools.load_log`` or a ``DrivingLog``; ``None`` on resume reads the
            saved config's paths.
        out: the run folder. It must hold no run unless ``resume`` or ``overwrite``.
        resume: continue the run in ``out`` from ``last.keras``. Options not given come from its
            ``config.json``; given recipe options (what is trained) are refused, runtime options may change.
            Defaults to `False`.
        overwrite: replace the run in ``out``. Defaults to `False`.
        callbacks: extra Keras callbacks, run after the checkpoint. Defaults to `()`.
        memory_budget: bytes ``cache="auto"`` may keep in memory. Defaults to half the available memory.
        check_closed_loop: after training, drive ``best.keras`` closed loop through the validation span
            (``e2e_drive.closed_loop.closed_loop_check``: replay, or the simulator for its own recordings) and
            return it as ``TrainResult.closed_loop``. Defaults to `True`.
        **options: ``TrainConfig`` fields, each declared with its flag, section and default (the table below,
            made from the declarations). Recipe options change what is trained and are refused on resume; runtime
            options may change.

    Options:
{options}

    Returns:
        a ``TrainResult``.

    Raises:
        TrainConfigError: an invalid option (the message names the flag).
        RunDirError: ``out`` holds a run, holds none to resume, is locked, or has a damaged file.
        TrainingDiverged: the loss became NaN/inf (the last good checkpoint is kept).

    Example:
        >>> result = train(["../shared/data/udacity_sim_a"], "runs/udacity", epochs=5)
        >>> result.val_rmse
    """
    split = TimeSplit()
    pad_the_heap()  # the steps' freed tensors stay in the process: a quarter less time per CPU step
    run = RunDir(out)
    config, transform = _resolve_config(run, data, resume, overwrite, options)

    import keras

    strategy = make_strategy(config.strategy)  # first: MultiWorkerMirroredStrategy must precede other TF work
    worker, num_workers = worker_info(strategy)
    _refuse_unsupported(config, strategy, num_workers)
    chief = worker == 0
    created = chief and not run.path.exists()
    locked = False
    try:
        # Only the chief writes the run folder; the other workers read it on resume.
        with run.lock() if chief else contextlib.nullcontext():
            locked = chief
            if resume:
                run.check_resumable()
            elif chief:
                run.check_new(overwrite)
            keras.utils.set_random_seed(config.seed)  # the same initial weights on every worker
            with split.part("read"):
                plan = plan_run(config, data if data is not None else list(config.data), strategy,
                                transform=transform, memory_budget=memory_budget)
            decoded = plan.train_ds.decode_seconds + (plan.val_ds.decode_seconds if plan.val_ds is not None else 0.0)
            split.add("read", -decoded)
            split.add("decode", decoded)
            return execute(plan, run, resume=resume, callbacks=callbacks, check_closed_loop=check_closed_loop,
                           split=split)
    except BaseException:
        if locked and created and not (run.path / STATE).exists():
            # A run that failed before its first checkpoint leaves nothing behind.
            shutil.rmtree(run.path, ignore_errors=True)
        raise


train.__doc__ = train.__doc__.replace("{options}", "\n".join(
    textwrap.fill(line, 112, initial_indent=" " * 8, subsequent_indent=" " * 12)
    for line in TrainConfig.describe_options().splitlines()))
