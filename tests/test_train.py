"""Training: run files, checkpoints, resume after SIGKILL, early stopping, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_tools.frames import read_frame, write_frame
from data_tools.log import DrivingLog

REPO = Path(__file__).resolve().parents[1]
from tests.builders import CROP, LOG_FRAME as FRAME, synthetic_log  # noqa: E402


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory) -> DrivingLog:
    return synthetic_log(tmp_path_factory.mktemp("frames"))


def test_train_writes_a_complete_run(tiny_log, tmp_path):
    from e2e_drive.models import load_model
    from e2e_drive.train import read_history_csv, train

    result = train(tiny_log, str(tmp_path / "run"), epochs=2, batch_size=16, crop=CROP, early_stopping=0,
                   verbose=0)
    run = Path(result.run_dir)
    for name in ("config.json", "best.keras", "last.keras", "history.csv", "loss.png", "state.json"):
        assert (run / name).is_file(), name
    if importlib.util.find_spec("tensorboard"):
        assert list(run.glob("logs/**/events.out.tfevents.*")), "TensorBoard logs missing"
    assert not list(run.glob(".*.tmp")) and not list(run.glob(".*.keras")), "temporary files left behind"
    assert (result.num_train, result.num_val) == (38, 10)
    history = read_history_csv(run / "history.csv")
    assert len(history["loss"]) == len(history["val_loss"]) == 2
    assert history == result.history
    config = json.loads((run / "config.json").read_text())
    assert config["crop"] == list(CROP) and config["frame_shape"] == [*FRAME, 3]

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

    a = train(tiny_log, str(tmp_path / "a"), epochs=1, batch_size=16, crop=CROP, seed=3, verbose=0)
    # Same batches from two worker processes (through shared memory) as from the main thread.
    b = train(tiny_log, str(tmp_path / "b"), epochs=1, batch_size=16, crop=CROP, seed=3, verbose=0,
              workers=2, worker_processes=True)
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-4)


RESUME_SCRIPT = """
import sys, time, keras
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.builders import synthetic_log
from e2e_drive.train import train

class SlowEpochs(keras.callbacks.Callback):
    # Gives the test time to kill the run between epochs' checkpoints.
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(30)

log = synthetic_log(Path({frames!r}))
extra = [SlowEpochs()] if sys.argv[1] == "slow" else []
train(log, {out!r}, epochs=3, batch_size=16, crop=(4, 4), early_stopping=0, verbose=2,
      resume=sys.argv[2] == "resume", callbacks=extra)
"""


def test_resume_after_sigkill_finishes_all_epochs(tmp_path):
    from e2e_drive.models import load_model
    from e2e_drive.train import read_history_csv

    out = tmp_path / "run"
    script = tmp_path / "run_train.py"
    script.write_text(RESUME_SCRIPT.format(repo=str(REPO), frames=str(tmp_path / "frames"), out=str(out)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen([sys.executable, str(script), "slow", "fresh"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "state.json").exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 1
    killed_history = read_history_csv(out / "history.csv")
    assert len(killed_history["loss"]) == 1

    done = subprocess.run([sys.executable, str(script), "fast", "resume"], env=env, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    history = read_history_csv(out / "history.csv")
    assert len(history["loss"]) == 3
    assert history["loss"][0] == killed_history["loss"][0]
    assert json.loads((out / "state.json").read_text())["epoch"] == 3
    # Same optimizer carried on: Adam's step counter covers all 3 epochs of 3 steps each.
    last = load_model(str(out / "last.keras"), compile=True)
    assert int(last.optimizer.iterations.numpy()) == 9


def test_early_stopping_stops_on_val_loss(tiny_log, tmp_path):
    from e2e_drive.train import train

    # Learning rate 0 and no augmentation: the val loss never improves after epoch 1,
    # so patience 2 stops the run after epoch 3 of 8.
    result = train(tiny_log, str(tmp_path / "run"), epochs=8, batch_size=16, crop=CROP, learning_rate=0.0,
                   early_stopping=2, augment=False, verbose=0)
    losses = result.history["val_loss"]
    assert result.stopped_early and result.epochs_run == 3 and len(losses) == 3
    assert losses[1] == pytest.approx(losses[0]) and losses[2] == pytest.approx(losses[0])


def test_bad_inputs_give_clear_errors_and_leave_no_run(tiny_log, tmp_path):
    from e2e_drive.train import train

    with pytest.raises(ValueError, match="expected one of: elu, relu, prelu, maxout, rrelu, apl"):
        train(tiny_log, str(tmp_path / "a"), activation="swish", verbose=0)
    with pytest.raises(ValueError, match="empty"):
        train(tiny_log[np.zeros(len(tiny_log), bool)], str(tmp_path / "b"), verbose=0)
    with pytest.raises(ValueError, match="leaves 0 rows"):
        train(tiny_log, str(tmp_path / "c"), crop=(30, 10), verbose=0)
    with pytest.raises(ValueError, match="holds no checkpoint"):
        train(tiny_log, str(tmp_path / "d"), resume=True, verbose=0)
    for name in "abcd":
        assert not (tmp_path / name).exists(), f"failed run left {name}/ behind"


def test_resume_with_frames_of_another_size_fails_clearly(tiny_log, tmp_path):
    from e2e_drive.train import train

    out = str(tmp_path / "run")
    train(tiny_log, out, epochs=1, batch_size=16, crop=CROP, verbose=0)
    other = synthetic_log(tmp_path / "other", n=8)
    other_big = other.with_steering(other.steering)
    # Frames of another size: write 48x96 frames.
    import cv2

    for path in other_big.images["center"]:
        write_frame(path, cv2.resize(read_frame(path), (96, 48)))
    with pytest.raises(ValueError, match=r"takes frames of shape \(40, 80, 3\).*\(48, 96, 3\)"):
        train(other_big, out, epochs=2, batch_size=4, resume=True, augment=False, verbose=0)


def test_mixed_precision_keeps_float32_output(tiny_log, tmp_path):
    import keras

    from e2e_drive.models import load_model
    from e2e_drive.train import train

    result = train(tiny_log, str(tmp_path / "run"), epochs=1, batch_size=16, crop=CROP, mixed_precision=True,
                   verbose=0)
    model = load_model(result.last_model_path, compile=True)
    assert model.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"  # CPU: bfloat16
    assert model.get_layer("steering").dtype_policy.name == "float32"
    assert model.outputs[0].dtype == "float32"
    assert np.isfinite(result.history["loss"]).all()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run


def test_cli_train_help_and_errors(tmp_path, capsys):
    from e2e_drive.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "e2e-drive train ../shared/data/udacity_sim_a --out runs/udacity" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--activation", "swish"])
    assert exit_info.value.code == 2
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--epochs", "1"]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_train_on_a_udacity_folder(tmp_path, capsys):
    """End to end through the real reader: a Udacity-format folder written here."""
    from e2e_drive.cli import main

    log = synthetic_log(tmp_path / "sim" / "IMG", n=24)
    lines = [f"{log.images['center'][i]}, {log.images['left'][i]}, {log.images['right'][i]}, "
             f"{log.steering[i]}, 0.5, 0, 20.0" for i in range(len(log))]
    (tmp_path / "sim" / "driving_log.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "runs" / "cli"
    code = main(["train", str(tmp_path / "sim"), "--out", str(out), "--epochs", "2", "--batch-size", "8",
                 "--crop", "4,4", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_train"] + report["num_val"] == 24 and len(report["history"]["loss"]) == 2
    assert (out / "best.keras").is_file()
