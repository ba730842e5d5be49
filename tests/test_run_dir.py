"""RunDir: the run folder's lock (real processes), run-file checks, damaged files, atomic model saves."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.run_dir import RunDir, RunDirError, RunLockedError, history_csv, read_history_csv

REPO = Path(__file__).resolve().parents[1]
HOLD_LOCK = """
import sys, time
from e2e_drive.run_dir import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold_lock(folder: Path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder), str(seconds)],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_live_holder_refuses_a_second_run_and_releases_when_it_exits(tmp_path):
    holder = _hold_lock(tmp_path / "run", 5)
    try:
        lock = json.loads((tmp_path / "run" / "train.lock").read_text())
        assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname()
        start = time.monotonic()
        with pytest.raises(RunLockedError, match=rf"run: locked by another e2e-drive train \(pid {holder.pid} on "
                                                  rf"{socket.gethostname()}, started \d{{4}}-"):
            RunDir(tmp_path / "run").acquire()
        assert time.monotonic() - start < 1
        assert holder.wait(timeout=60) == 0
    finally:
        holder.kill()
    assert not (tmp_path / "run" / "train.lock").exists()  # released on a normal exit
    run = RunDir(tmp_path / "run")
    run.acquire()
    assert json.loads((tmp_path / "run" / "train.lock").read_text())["pid"] == os.getpid()
    run.release()
    assert not (tmp_path / "run" / "train.lock").exists()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a PID that no longer runs
    (tmp_path / "train.lock").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(),
                                                     "started": "2020-01-01 00:00:00"}))
    with caplog.at_level(logging.WARNING, logger="e2e_drive.run_dir"):
        with RunDir(tmp_path).lock():
            assert json.loads((tmp_path / "train.lock").read_text())["pid"] == os.getpid()
    assert f"taking over a stale lock (pid {gone.pid} on" in caplog.text
    assert not (tmp_path / "train.lock").exists() and not list(tmp_path.glob(".*"))


def test_a_lock_from_another_host_is_respected(tmp_path):
    (tmp_path / "train.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now"}))
    with pytest.raises(RunLockedError, match="pid 1 on elsewhere"):
        RunDir(tmp_path).acquire()


def test_the_lock_is_released_on_an_exception(tmp_path):
    with pytest.raises(KeyError):
        with RunDir(tmp_path).lock():
            raise KeyError("boom")
    assert not (tmp_path / "train.lock").exists()


def test_run_files_are_refused_and_overwrite_removes_only_them(tmp_path):
    run = RunDir(tmp_path)
    run.check_new()  # empty: fine
    (tmp_path / "best.keras").write_bytes(b"model")
    (tmp_path / "logs").mkdir()
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(RunDirError, match=r"already holds a run \(best.keras, logs\)"):
        run.check_new()
    assert (tmp_path / "best.keras").read_bytes() == b"model"
    run.check_new(overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    with pytest.raises(RunDirError, match=r"cannot resume: no checkpoint here \(config.json, state.json, last.keras"):
        run.check_resumable()


def test_damaged_state_and_history_name_the_file(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "state.json").write_text('{"epoch": 3, "be')
    with pytest.raises(RunDirError, match=r"state.json: not valid JSON \(half-written or damaged\?\)"):
        run.read_state()
    (tmp_path / "state.json").write_text('{"epoch": "three"}')
    with pytest.raises(RunDirError, match=r"state.json: expected an object with a whole 'epoch'"):
        run.read_state()
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.5\n2,abc\n")
    with pytest.raises(RunDirError, match="history.csv: cannot read the history"):
        run.read_history()
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(RunDirError, match=r"config.json: not valid JSON"):
        run.read_config()


def test_an_epoch_writes_its_files_and_history_round_trips(tmp_path, tiny_model):
    import keras

    from e2e_drive.train_config import TrainConfig

    history = {"loss": [0.5, 0.25, 0.125], "val_loss": [0.6, 0.3, 1 / 3]}
    run = RunDir(tmp_path)
    model = tiny_model("relu")
    run.write_epoch(model, history, {"epoch": 3}, TrainConfig(data=("a",)), improved=True)
    assert read_history_csv(tmp_path / "history.csv") == history == run.read_history()
    assert history_csv(history).splitlines()[0] == "epoch,loss,val_loss"
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run.read_state() == {"epoch": 3} and run.read_config() == TrainConfig(data=("a",))
    assert (tmp_path / "best.keras").read_bytes() == (tmp_path / "last.keras").read_bytes()
    loaded = keras.saving.load_model(tmp_path / "last.keras")
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Without an improvement best.keras stays the earlier epoch's.
    best = (tmp_path / "best.keras").read_bytes()
    model.set_weights([w + 1 for w in model.get_weights()])
    run.write_epoch(model, {k: v + [0.1] for k, v in history.items()}, {"epoch": 4}, TrainConfig(data=("a",)),
                    improved=False)
    assert (tmp_path / "best.keras").read_bytes() == best != (tmp_path / "last.keras").read_bytes()


def test_a_model_that_does_not_load_back_leaves_the_whole_epoch_as_it_was(tmp_path, tiny_model):
    import keras

    from e2e_drive.train_config import TrainConfig

    run = RunDir(tmp_path)
    run.write_epoch(tiny_model("relu"), {"loss": [0.5]}, {"epoch": 1}, TrainConfig(data=("a",)), improved=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    class Unloadable(keras.layers.Layer):  # saves, but is not registered: loading it back fails
        def call(self, x):
            return x

    inputs = keras.Input((2,))
    broken = keras.Model(inputs, Unloadable()(inputs))
    with pytest.raises(Exception, match="Unloadable"):
        run.write_epoch(broken, {"loss": [0.5, 0.4]}, {"epoch": 2}, TrainConfig(data=("b",)), improved=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary left either
