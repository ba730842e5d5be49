"""Multi-worker training: a distributed custom training step (``strategy.run`` + all-reduce).

Keras 3's ``model.fit`` fails under ``tf.distribute.MultiWorkerMirroredStrategy``
("Attempt to convert a value (PerReplica...)", keras-team/keras#20585), so
``--strategy multiworker`` trains with this loop instead: the same PilotNet,
MSE loss, Adam optimizer, checkpoint files and history as ``e2e_drive.train``.

Every worker reads the same log and builds the same ``DrivingDataset``; in each
global step worker ``k`` of ``n`` takes batch ``step * n + k`` of the epoch, so
the workers see disjoint batches whose gradients are summed (all-reduce) and
scaled by the global batch size. Worker 0 (the chief) writes the run directory.

Run on a cluster with one command per machine (the same DATA path on each):

    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}' \\
        e2e-drive train DATA --out runs/mw --strategy multiworker
    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 1}}' \\
        e2e-drive train DATA --out runs/mw --strategy multiworker
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from data_tools.log import DrivingLog


def worker_info(strategy) -> tuple[int, int]:
    """``(worker index, number of workers)`` of this process."""
    resolver = strategy.cluster_resolver
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0, 1
    return int(resolver.task_id or 0), int(resolver.cluster_spec().num_tasks("worker"))


def train_multiworker(
    data: Sequence[str] | DrivingLog,
    out: str,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    activation: str = "elu",
    conv: str = "keras",
    augment=True,
    balance: bool = False,
    seed: int = 0,
    val_fraction: float = 0.2,
    crop: Sequence[int] | str | None = None,
    smooth_steering: float = 0.0,
    resume: bool = False,
    verbose: int = 1,
    strategy=None,
    steps_per_epoch: int | None = None,
):
    """Train PilotNet with ``MultiWorkerMirroredStrategy`` (configured by ``TF_CONFIG``).

    Args: as ``e2e_drive.train.train``; ``batch_size`` is per worker. Additionally:
        strategy: a ``tf.distribute`` strategy; defaults to ``MultiWorkerMirroredStrategy()``.
        steps_per_epoch: cap on global steps per epoch (for smoke tests). Defaults to all batches.

    Returns:
        a ``TrainResult`` (the chief's files; ``result.model`` holds the trained model on every worker).
    """
    import keras
    import tensorflow as tf

    from data_tools.dataset import DrivingDataset
    from e2e_drive import models
    from e2e_drive.train import (TrainResult, _augmentation, _parse_crop, history_csv, load_log, plot_history,
                                 read_history_csv, save_model_atomic, smooth, write_atomic)

    models.check_activation(activation)
    models.check_conv(conv)
    if strategy is None:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    worker, num_workers = worker_info(strategy)
    chief = worker == 0
    keras.utils.set_random_seed(seed)  # the same initial weights on every worker
    log = smooth(load_log(data), smooth_steering)
    train_log, val_log = log.split(val_fraction)
    if balance:
        # Only the training part: validation keeps the true distribution.
        import data_tools

        train_log = data_tools.balance(train_log, seed=seed)
    train_ds = DrivingDataset(train_log, batch_size, augment=_augmentation(augment),
                              seed=seed, drop_remainder=True, progress=chief and verbose > 0)
    val_ds = DrivingDataset(val_log, batch_size, shuffle=False, progress=False) if len(val_log) else None
    steps = len(train_ds) // num_workers
    if steps_per_epoch:
        steps = min(steps, int(steps_per_epoch))
    if steps < 1:
        raise ValueError(f"{len(train_log)} training rows make {len(train_ds)} batches of {batch_size}: "
                         f"fewer than one per worker ({num_workers} workers)")
    run_dir = Path(out)
    global_batch = batch_size * strategy.num_replicas_in_sync

    with strategy.scope():
        if resume:
            model = models.load_model(str(run_dir / "last.keras"), compile=True)
            optimizer = model.optimizer
            state = json.loads((run_dir / "state.json").read_text())
            history = read_history_csv(run_dir / "history.csv")
        else:
            model = models.pilotnet(train_ds.frame_shape, activation=activation, conv=conv,
                                    crop=_parse_crop(crop), seed=seed)
            optimizer = keras.optimizers.Adam(learning_rate)
            state, history = {"epoch": 0}, {}
        models.check_fits(model, train_ds.frame_shape, f"the training data ({train_log.describe(0)})")
        # compile() only so that last.keras carries the optimizer (and resumes with it).
        model.compile(optimizer=optimizer, loss="mse")
        optimizer.build(model.trainable_variables)

    def replica_step(frames, steering):
        with tf.GradientTape() as tape:
            prediction = tf.reshape(model(frames, training=True), [-1])
            per_example = tf.square(prediction - steering)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function
    def distributed_step(frames, steering):
        losses = strategy.run(replica_step, args=(frames, steering))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_atomic(run_dir / "config.json", json.dumps(dict(
                data=[os.fspath(p) for p in data] if not isinstance(data, DrivingLog) else [str(log.source[0])],
                epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, activation=activation, conv=conv,
                augment=augment if isinstance(augment, bool) else repr(augment), seed=seed,
                val_fraction=val_fraction, strategy="multiworker",
                num_workers=num_workers, frame_shape=list(train_ds.frame_shape)), indent=2))
    start = time.perf_counter()
    for epoch in range(int(state.get("epoch", 0)), epochs):
        bar = keras.utils.Progbar(steps, verbose=verbose if chief else 0)
        total = 0.0
        for step in range(steps):
            frames, steering = train_ds.batch(epoch, step * num_workers + worker)
            loss = float(distributed_step(tf.constant(frames), tf.constant(steering)))
            total += loss
            bar.update(step + 1, [("loss", loss)])
        logs = {"loss": total / steps}
        if val_ds is not None:
            # Every worker holds the same weights: the validation loss is computed locally.
            # (A plain call: predict_on_batch would gather the replicas' outputs of every worker.)
            errors = [np.square(np.asarray(model(val_ds[i][0], training=False)).reshape(-1) - val_ds[i][1])
                      for i in range(len(val_ds))]
            logs["val_loss"] = float(np.mean(np.concatenate(errors)))
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        monitor = logs.get("val_loss", logs["loss"])
        state["epoch"] = epoch + 1
        if chief:
            if monitor < state.get("best", float("inf")) or not (run_dir / "best.keras").exists():
                state.update(best=monitor, best_epoch=epoch + 1)
                save_model_atomic(model, run_dir / "best.keras")
            save_model_atomic(model, run_dir / "last.keras")
            write_atomic(run_dir / "history.csv", history_csv(history))
            plot_history(history, run_dir / "loss.png")
            write_atomic(run_dir / "state.json", json.dumps(state, indent=2))
            if verbose:
                from e2e_drive.cli import log as log_line

                log_line(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.5f}" for k, v in logs.items()))
    result = TrainResult(
        run_dir=str(run_dir), best_model_path=str(run_dir / "best.keras"), last_model_path=str(run_dir / "last.keras"),
        history=history, val_rmse=float(np.sqrt(state["best"])) if "best" in state and val_ds is not None else
        float("nan"), train_seconds=time.perf_counter() - start, num_train=len(train_log), num_val=len(val_log),
        epochs_run=int(state["epoch"]),
    )
    result.model = model
    return result

