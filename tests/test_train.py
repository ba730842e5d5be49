"""Training: run files, checkpoints, the lock, resume (after SIGKILL, refused differences), early stopping,
NaN stops, the frame cache choice and bad input."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_tools.frames import read_frame, write_frame
from data_tools.log import DrivingLog
from tests.builders import CROP, LOG_FRAME as FRAME, synthetic_log

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
ARTIFACTS = ("config.json", "state.json", "history.csv", "loss.png", "best.keras", "last.keras")


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory) -> DrivingLog:
    return synthetic_log(tmp_path_factory.mktemp("frames"))


@pytest.fixture(scope="module")
def finished_run(tiny_log, tmp_path_factory) -> Path:
    """A one-epoch run, copied by tests that damage or resume it."""
    from e2e_drive.train import train

    out = tmp_path_factory.mktemp("runs") / "run"
    train(tiny_log, out, epochs=1, batch_size=16, crop=CROP, verbose=0)
    return out


def copy_run(finished_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_writes_a_complete_run(tiny_log, tmp_path):
    from e2e_drive.models import load_model
    from e2e_drive.run_dir import read_history_csv
    from e2e_drive.train import train
    from e2e_drive.train_config import TrainConfig

    result = train(tiny_log, tmp_path / "run", epochs=2, batch_size=16, crop=CROP, early_stopping=0, verbose=0,
                   select_by="val_loss")
    run = Path(result.run_dir)
    for name in ARTIFACTS:
        assert (run / name).is_file(), name
    if importlib.util.find_spec("tensorboard"):
        assert list(run.glob("logs/**/events.out.tfevents.*")), "TensorBoard logs missing"
    assert not list(run.glob(".*")), "temporary files or the lock left behind"
    assert (result.num_train, result.num_val) == (38, 10)
    history = read_history_csv(run / "history.csv")
    assert len(history["loss"]) == len(history["val_loss"]) == 2
    assert history == result.history
    config = TrainConfig.from_json((run / "config.json").read_text())
    assert config.crop == CROP and config.frame_shape == (*FRAME, 3) and config.epochs == 2
    assert (config.num_train, config.num_val, config.cache) == (38, 10, "auto") and result.cache == "memory"

    # best.keras is the epoch with the lowest val loss: re-evaluating it on the validation rows
    # (Keras' own evaluate, on frames read independently) gives the recorded figure.
    _, val_log = tiny_log.split(0.2)
    best = load_model(result.best_model_path)
    best.compile(loss="mse")
    frames = np.stack([read_frame(p) for p in val_log.images["center"]])
    val_mse = best.evaluate(frames, val_log.steering, verbose=0)
    assert val_mse == pytest.approx(min(history["val_loss"]), rel=1e-3)
    assert result.val_rmse == pytest.approx(np.sqrt(min(history["val_loss"])), rel=1e-6)
    # last.keras carries the optimizer state: Adam has taken 2 epochs x 3 steps.
    last = load_model(result.last_model_path, compile=True)
    assert int(last.optimizer.iterations.numpy()) == 2 * 3


def test_same_seed_same_first_epoch(tiny_log, tmp_path):
    from e2e_drive.train import train

    a = train(tiny_log, tmp_path / "a", epochs=1, batch_size=16, crop=CROP, seed=3, verbose=0)
    # Same batches from two worker processes (through shared memory) as from the main thread.
    b = train(tiny_log, tmp_path / "b", epochs=1, batch_size=16, crop=CROP, seed=3, verbose=0,
              workers=2, worker_processes=True)
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-4)


RESUME_SCRIPT = """
import sys, time, keras
from pathlib import Path
from tests.builders import synthetic_log
from e2e_drive.train import train

class SlowEpochs(keras.callbacks.Callback):
    # Gives the test time to try a second run and to kill this one between epochs' checkpoints.
    def on_epoch_end(self, epoch, logs=None):
        Path({sleeping!r}).touch()  # every run file of the epoch is written: the test may look now
        time.sleep(60)

log = synthetic_log(Path({frames!r}))
extra = [SlowEpochs()] if sys.argv[1] == "slow" else []
train(log, {out!r}, epochs=3, batch_size=16, crop=(4, 4), early_stopping=0, verbose=2, epoch_samples=0,
      resume=sys.argv[2] == "resume", callbacks=extra)
"""


def test_lock_and_resume_after_sigkill(tiny_log, tmp_path):
    """A live run holds the folder (a second run fails at once); killed, its lock is stale and a resume
    takes it over and finishes every epoch."""
    from e2e_drive.models import load_model
    from e2e_drive.run_dir import RunLockedError, read_history_csv
    from e2e_drive.train import train

    out = tmp_path / "run"
    script = tmp_path / "run_train.py"
    sleeping = tmp_path / "sleeping"
    script.write_text(RESUME_SCRIPT.format(frames=str(tmp_path / "frames"), out=str(out), sleeping=str(sleeping)))
    process = subprocess.Popen([sys.executable, str(script), "slow", "fresh"], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not sleeping.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.1)
        before = snapshot(out)
        start = time.monotonic()
        with pytest.raises(RunLockedError, match=rf"run: locked by another e2e-drive train \(pid {process.pid} on "):
            train(None, out, epochs=3, verbose=0, resume=True)  # the data of the saved config
        with pytest.raises(RunLockedError, match=f"pid {process.pid}"):
            train(tiny_log, out, epochs=3, batch_size=16, crop=CROP, verbose=0, overwrite=True)
        assert time.monotonic() - start < 10 and snapshot(out) == before
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 1
    killed_history = read_history_csv(out / "history.csv")
    assert len(killed_history["loss"]) == 1
    assert (out / "train.lock").exists()  # SIGKILL: no chance to release it

    done = subprocess.run([sys.executable, str(script), "fast", "resume"], env=ENV, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert f"taking over a stale lock (pid {process.pid}" in done.stderr.decode()
    history = read_history_csv(out / "history.csv")
    assert len(history["loss"]) == 3
    assert history["loss"][0] == killed_history["loss"][0]
    assert json.loads((out / "state.json").read_text())["epoch"] == 3
    assert not (out / "train.lock").exists()
    # Same optimizer carried on: Adam's step counter covers all 3 epochs of 3 steps each.
    last = load_model(out / "last.keras", compile=True)
    assert int(last.optimizer.iterations.numpy()) == 9


@pytest.mark.parametrize("artifact", ARTIFACTS + ("logs",))
def test_a_folder_holding_any_run_file_is_refused(tiny_log, tmp_path, artifact):
    from e2e_drive.run_dir import RunDirError
    from e2e_drive.train import train

    out = tmp_path / "run"
    out.mkdir()
    if artifact == "logs":
        (out / "logs").mkdir()
        (out / "logs" / "events").write_bytes(b"old events")
    else:
        (out / artifact).write_bytes(b"an earlier run's " + artifact.encode())
    before = snapshot(out)
    with pytest.raises(RunDirError, match=rf"run: already holds a run \({artifact}\); pass --resume .* --overwrite"):
        train(tiny_log, out, epochs=1, batch_size=16, crop=CROP, verbose=0)
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == [artifact]


def test_overwrite_replaces_the_run(finished_run, tiny_log, tmp_path):
    from e2e_drive.train import train

    out = copy_run(finished_run, tmp_path)
    (out / "notes.txt").write_text("mine")  # not a run file: kept
    result = train(tiny_log, out, epochs=2, batch_size=16, crop=(5, 5), verbose=0, overwrite=True)
    config = json.loads((out / "config.json").read_text())
    assert config["crop"] == [5, 5] and config["epochs"] == 2 and len(result.history["loss"]) == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_refuses_other_options_and_keeps_the_run(finished_run, tiny_log, tmp_path):
    from e2e_drive.run_dir import RunDirError
    from e2e_drive.train import train

    out = copy_run(finished_run, tmp_path)
    before = snapshot(out)
    other = synthetic_log(tmp_path / "other", n=8)
    with pytest.raises(RunDirError) as error:
        train(other, out, resume=True, epochs=3, activation="relu", learning_rate=0.01, batch_size=8,
              crop=(2, 2), seed=1, dropout=0.5, smooth_steering=2, augment=False, workers=2, verbose=0)
    message = str(error.value)
    for line in ("--activation: saved elu, given relu", "--lr: saved 0.001, given 0.01",
                 "--batch-size: saved 16, given 8", "--crop: saved 4,4, given 2,2", "--seed: saved 0, given 1",
                 "--dropout: saved 0, given 0.5", "--smooth-steering: saved 0, given 2",
                 "--no-augment: saved true, given false", "DATA: saved "):
        assert line in message, message
    assert "--epochs" not in message.split("only")[0] and "--workers" not in message.split("only")[0]
    assert snapshot(out) == before


def test_resume_takes_unspecified_options_from_the_saved_config(finished_run, tiny_log, tmp_path):
    from e2e_drive.train import train

    out = copy_run(finished_run, tmp_path)
    result = train(tiny_log, out, resume=True, epochs=2, verbose=0, cache="none")
    config = json.loads((out / "config.json").read_text())
    assert config["crop"] == list(CROP) and config["batch_size"] == 16  # from the saved run
    assert config["epochs"] == 2 and config["cache"] == "none" and config["verbose"] == 0  # may change
    assert len(result.history["loss"]) == 2 and result.cache == "none"
    assert json.loads((out / "state.json").read_text())["epoch"] == 2


class LearningRates:
    """A callback factory that records Adam's learning rate at the start of every epoch."""

    def __init__(self):
        import keras

        self.seen: list[float] = []
        seen = self.seen

        class Record(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                seen.append(float(np.asarray(self.model.optimizer.learning_rate)))

        self.callback = Record()


def test_cosine_schedule_decays_the_learning_rate_and_a_resume_stretches_it(tiny_log, tmp_path):
    from e2e_drive.models import load_model
    from e2e_drive.train import train

    # Closed form of a cosine from 2e-3 to 0 over N epochs, at the start of each.
    def cosine(epochs):
        return [2e-3 * 0.5 * (1 + np.cos(np.pi * epoch / epochs)) for epoch in range(epochs)]

    short = tmp_path / "short"
    rates = LearningRates()
    train(tiny_log, short, epochs=2, batch_size=16, crop=CROP, learning_rate=2e-3, verbose=0,
          callbacks=[rates.callback])
    assert np.allclose(rates.seen, cosine(2), rtol=1e-5, atol=1e-9)
    assert float(np.asarray(load_model(short / "last.keras", compile=True).optimizer.learning_rate)) < 1e-9
    # Resumed up to 4 epochs, it follows the 4-epoch curve from where it stopped, not a finished decay.
    resumed = LearningRates()
    train(tiny_log, short, resume=True, epochs=4, verbose=0, callbacks=[resumed.callback])
    assert np.allclose(resumed.seen, cosine(4)[2:], rtol=1e-5, atol=1e-9)
    # constant: the learning rate throughout.
    constant = LearningRates()
    train(tiny_log, tmp_path / "constant", epochs=2, batch_size=16, crop=CROP, lr_schedule="constant", verbose=0,
          callbacks=[constant.callback])
    assert np.allclose(constant.seen, [1e-3, 1e-3])


@pytest.mark.parametrize("damaged", ["state.json", "config.json"])
def test_resume_from_a_damaged_file_names_it(finished_run, tiny_log, tmp_path, damaged):
    from e2e_drive.run_dir import RunDirError
    from e2e_drive.train import train

    out = copy_run(finished_run, tmp_path)
    text = (out / damaged).read_text()
    (out / damaged).write_text(text[: len(text) // 2])  # half-written
    with pytest.raises(RunDirError, match=rf"run/{damaged}: not valid JSON \(half-written or damaged\?\)"):
        train(tiny_log, out, resume=True, epochs=2, verbose=0)


def test_a_resumed_epoch_that_cannot_be_written_leaves_the_folder_of_the_last_one(finished_run, tiny_log,
                                                                                  tmp_path):
    """A full disk at epoch 2's checkpoint (a real size limit on file writes, EFBIG): the error names the
    checkpoint and every file (config.json, history.csv, state.json, loss.png, both models) is epoch 1's."""
    import resource

    from e2e_drive.train import train

    out = copy_run(finished_run, tmp_path)
    shutil.rmtree(out / "logs", ignore_errors=True)  # TensorBoard's event files grow with every run
    before = snapshot(out)
    limit = (out / "last.keras").stat().st_size // 2  # room for the small files, not for a checkpoint
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError, match=r"run/(best|last)\.keras"):
            train(tiny_log, out, resume=True, epochs=2, verbose=0, cache="none")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    after = {name: data for name, data in snapshot(out).items() if not name.startswith("logs/")}
    assert after == before
    done = train(tiny_log, out, resume=True, epochs=2, verbose=0, cache="none")  # the disk has room again
    assert done.epochs_run == 2 and json.loads((out / "config.json").read_text())["epochs"] == 2


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tiny_log, tmp_path):
    import keras

    from e2e_drive.models import load_model
    from e2e_drive.train import TrainingDiverged, train

    class BlowUp(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # after a good first epoch, a learning rate no training survives
                self.model.optimizer.learning_rate.assign(1e8)

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"run: training loss became nan at epoch 2, step \d; kept "
                                               r"best.keras/last.keras of epoch 1 \(try a lower --lr"):
        train(tiny_log, out, epochs=3, batch_size=16, crop=CROP, augment=False, early_stopping=0, verbose=0,
              lr_schedule="constant", callbacks=[BlowUp()])
    assert json.loads((out / "state.json").read_text())["epoch"] == 1
    assert len((out / "history.csv").read_text().strip().splitlines()) == 2
    for name in ("best.keras", "last.keras"):
        weights = load_model(out / name).get_weights()
        assert all(np.isfinite(w).all() for w in weights), name
    assert not (out / "train.lock").exists()
    assert issubclass(TrainingDiverged, ValueError)  # the CLI's exit code 2


def test_early_stopping_stops_on_val_loss(tiny_log, tmp_path):
    from e2e_drive.train import train

    # A learning rate of 1e-30 and no augmentation: the weights stay where they start (the update is below
    # float32 resolution), the val loss never improves after epoch 1, so patience 2 stops after epoch 3 of 8.
    result = train(tiny_log, tmp_path / "run", epochs=8, batch_size=16, crop=CROP, learning_rate=1e-30,
                   early_stopping=2, augment=False, verbose=0, select_by="val_loss")
    losses = result.history["val_loss"]
    assert result.stopped_early and result.epochs_run == 3 and len(losses) == 3
    assert losses[1] == pytest.approx(losses[0]) and losses[2] == pytest.approx(losses[0])


def test_bad_inputs_give_clear_errors_and_leave_no_run(tiny_log, tmp_path):
    from data_tools import DataError
    from e2e_drive.train import train
    from e2e_drive.train_config import TrainConfigError

    with pytest.raises(TrainConfigError, match="--activation: expected one of elu, relu, prelu, maxout, rrelu, apl"):
        train(tiny_log, tmp_path / "a", activation="swish", verbose=0)
    with pytest.raises(DataError, match="no usable rows"):
        train(tiny_log[np.zeros(len(tiny_log), bool)], tmp_path / "b", verbose=0)
    with pytest.raises(ValueError, match="leaves 0 rows"):
        train(tiny_log, tmp_path / "c", crop=(30, 10), verbose=0)
    with pytest.raises(ValueError, match=r"d: cannot resume: no checkpoint here \(config.json, state.json"):
        train(tiny_log, tmp_path / "d", resume=True, verbose=0)
    with pytest.raises(TrainConfigError, match="--lr: expected a finite number > 0, got nan"):
        train(tiny_log, tmp_path / "e", learning_rate=float("nan"), verbose=0)
    with pytest.raises(TypeError, match="unknown option.*learning_rat"):
        train(tiny_log, tmp_path / "f", learning_rat=0.1)
    for name in "abcdef":
        assert not (tmp_path / name).exists(), f"failed run left {name}/ behind"


def test_a_log_too_small_for_validation_is_refused(tmp_path):
    from e2e_drive.train import train

    log = synthetic_log(tmp_path / "frames", n=2)
    with pytest.raises(ValueError, match=r"--val-fraction: 0.2 of 2 rows \(1 recording\) leaves no validation rows"):
        train(log, tmp_path / "run", batch_size=2, crop=CROP, verbose=0)
    assert not (tmp_path / "run").exists()
    # Without validation the run trains, and says it has no validation figure.
    result = train(log, tmp_path / "run", epochs=1, batch_size=2, crop=CROP, val_fraction=0.0, verbose=0,
                   select_by="val_loss")
    assert result.val_rmse is None and result.num_val == 0 and "val_loss" not in result.history
    assert json.loads((tmp_path / "run" / "state.json").read_text())["monitor"] == "loss"


def test_resume_with_frames_of_another_size_fails_clearly(tmp_path):
    import cv2

    from e2e_drive.train import train

    log = synthetic_log(tmp_path / "frames", n=16)
    out = tmp_path / "run"
    train(log, out, epochs=1, batch_size=8, crop=CROP, verbose=0)
    for path in log.images["center"]:  # the same files, now 96x48
        write_frame(path, cv2.resize(read_frame(path), (96, 48)))
    with pytest.raises(ValueError, match=r"takes frames of shape \(40, 80, 3\).*\(48, 96, 3\)"):
        train(log, out, epochs=2, resume=True, cache="none", verbose=0)


def test_mixed_precision_keeps_float32_output(tiny_log, tmp_path):
    import keras

    from e2e_drive.models import load_model
    from e2e_drive.train import train

    result = train(tiny_log, tmp_path / "run", epochs=1, batch_size=16, crop=CROP, mixed_precision=True,
                   verbose=0)
    model = load_model(result.last_model_path, compile=True)
    assert model.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"  # CPU: bfloat16
    assert model.get_layer("steering").dtype_policy.name == "float32"
    assert model.outputs[0].dtype == "float32"
    assert np.isfinite(result.history["loss"]).all()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run


def test_cache_auto_picks_disk_under_a_small_budget_on_a_udacity_folder(tmp_path, caplog):
    """End to end through the real Udacity reader: frames larger than the budget go to the disk memmap."""
    from e2e_drive.train import train

    log = synthetic_log(tmp_path / "sim" / "IMG", n=24)
    lines = [f"{log.images['center'][i]}, {log.images['left'][i]}, {log.images['right'][i]}, "
             f"{log.steering[i]}, 0.5, 0, 20.0" for i in range(len(log))]
    (tmp_path / "sim" / "driving_log.csv").write_text("\n".join(lines) + "\n")
    caplog.set_level(logging.INFO, logger="e2e_drive.train")
    # 24 rows x 3 cameras (the default augmentation picks among them) of 40x80x3 bytes: 691.2 KB.
    result = train([tmp_path / "sim"], tmp_path / "run", epochs=1, batch_size=8, crop=CROP, verbose=0,
                   cache_dir=tmp_path / "cache", memory_budget=24 * 3 * 40 * 80 * 3 - 1)
    assert result.cache == "disk" and result.num_train + result.num_val == 24
    # One memmap (+ header) for the training rows, one for the validation rows.
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".json", ".u8", ".u8"]
    assert f"frame cache: disk under {tmp_path / 'cache'} (691.2 KB of decoded frames exceed" in caplog.text
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"] == [str(tmp_path / "sim")] and config["cache_dir"] == str(tmp_path / "cache")


def test_an_impossible_crop_is_refused_before_any_frame_is_decoded(tmp_path):
    from e2e_drive.train import train

    log = synthetic_log(tmp_path / "frames", n=12)
    with open(log.images["center"][5], "wb") as broken:  # decoding would stop here first
        broken.write(b"not an image")
    with pytest.raises(ValueError, match="--crop 30,30: leaves 0 rows of a 40-row frame"):
        train(log, tmp_path / "run", epochs=1, crop="30,30", verbose=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_shipped_defaults_train_a_recording_end_to_end(tmp_path):
    """`e2e-drive train DATA --out RUN` with nothing else, in its own process (none of the suite's one-pass
    epochs): 10 epochs of the recipe's repeated rows, the last epoch as best.keras, the simulator's closed-loop
    check, and a model that drives an unseen track better than steering straight does."""
    import math

    from data_tools import read_log
    from deploy import load_predictor
    from e2e_drive.models import load_model
    from e2e_drive.recipe import MAX_EPOCH_REPEAT
    from e2e_drive.sim.drive import drive
    from e2e_drive.train_config import TrainConfig

    recording, out = tmp_path / "rec", tmp_path / "run"
    cli = [sys.executable, "-m", "e2e_drive"]
    subprocess.run([*cli, "sim", "record", "--track", "3", "--laps", "0.25", "--out", str(recording), "--quiet"],
                   env=ENV, check=True, capture_output=True, timeout=120)
    done = subprocess.run([*cli, "train", str(recording), "--out", str(out), "--json"], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    config = TrainConfig.from_json((out / "config.json").read_text())
    # Every option its default: the car comes from the data, --json asks Keras for one line per epoch.
    assert config == TrainConfig(data=(str(recording),), car="sim", verbose=2, frame_shape=config.frame_shape,
                                 num_train=config.num_train, num_val=config.num_val)
    assert result["epochs_run"] == config.epochs == 10 and not result["stopped_early"]
    # The shipped epoch: 12,000 samples, at most MAX_EPOCH_REPEAT passes (this process patches the 12,000 to 0).
    repeat = min(MAX_EPOCH_REPEAT, math.ceil(12_000 / config.num_train))
    assert repeat > 1
    steps = math.ceil(config.num_train * repeat / config.batch_size)
    assert int(load_model(out / "last.keras", compile=True).optimizer.iterations.numpy()) == 10 * steps
    val = read_log(recording).split(config.val_fraction)[1]
    assert len(val) == config.num_val and math.isfinite(result["val_rmse"])
    # Closed loop on a track it never saw, against constant straight steering on the same track.
    network, straight = (drive(driver, [101], laps=0.3, progress=False)[0].summary() for driver in (
        load_predictor(str(out / "best.keras")), lambda frames: np.zeros(len(frames), np.float32)))
    assert straight["interventions"] > 0 and network["autonomy"] > straight["autonomy"] + 20
    closed_loop = json.loads((out / "closed_loop.json").read_text())
    assert closed_loop["by"] == "simulator" and closed_loop["tracks"] == [3] and closed_loop["autonomy"] > 50
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG" and (out / "closed_loop.png").is_file()
