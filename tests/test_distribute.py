"""Beyond one device: MirroredStrategy with model.fit, and the multi-worker custom step on 127.0.0.1.

The multi-worker runs are two real processes joined by TF_CONFIG on local ports; they go through the same
``train`` as one device, so the same options work and the same run files come out.
"""

from __future__ import annotations

import json
import re
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.builders import synthetic_log

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}

WORKER_SCRIPT = """
import json, sys
import numpy as np
from pathlib import Path
from tests.builders import synthetic_log
from e2e_drive.train import train

index, frames, out, options = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
log = synthetic_log(Path(frames), n=40)
result = train(log, out, **options)
tag = options.get("epochs", 10)
np.savez(Path(out).parent / f"weights_{index}_{tag}.npz", *result.model.get_weights())
(Path(out).parent / f"result_{index}_{tag}.json").write_text(json.dumps(result.to_dict()))
"""


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(tmp_path: Path, out: Path, **options) -> list[dict]:
    """Two workers on 127.0.0.1 training ``train(log, out, strategy="multiworker", **options)``."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = []
    for index in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, str(script), str(index), str(tmp_path / "frames"), str(out),
             json.dumps({"strategy": "multiworker", "verbose": 0, **options})],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for process in processes:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output.decode()[-3000:]
    tag = options.get("epochs", 10)
    return [json.loads((out.parent / f"result_{i}_{tag}.json").read_text()) for i in range(2)]


def _weights(out: Path, index: int, tag: int):
    return np.load(out.parent / f"weights_{index}_{tag}.npz")


OPTIONS = dict(epochs=4, batch_size=4, crop=[4, 4], seed=5, dropout=0.3, mixed_precision=True, early_stopping=1,
               augment=False, learning_rate=1e-30, epoch_samples=0, select_by="val_loss")


def test_one_device_and_two_workers_honour_the_same_options(tmp_path):
    """Early stopping, dropout and mixed precision (bfloat16 on CPU) under both; the same config schema."""
    from e2e_drive.models import load_model
    from e2e_drive.train import train

    log = synthetic_log(tmp_path / "frames", n=40)
    single = train(log, tmp_path / "single", verbose=0, **OPTIONS)
    results = _run_workers(tmp_path, tmp_path / "multi", **OPTIONS)
    # A learning rate of 1e-30 leaves the weights where they start: the validation loss never improves after
    # epoch 1, and patience 1 stops both runs after epoch 2 of 4.
    for result in (single.to_dict(), *results):
        assert result["stopped_early"] and result["epochs_run"] == 2, result
        assert sorted(result["history"]) == ["loss", "rmse", "val_loss", "val_rmse"]
    assert results[0]["history"] == results[1]["history"]  # all-reduced: the same on both workers
    single_config = json.loads((tmp_path / "single" / "config.json").read_text())
    multi_config = json.loads((tmp_path / "multi" / "config.json").read_text())
    assert list(single_config) == list(multi_config)
    differing = {k for k in single_config if single_config[k] != multi_config[k]}
    assert differing == {"strategy"}, differing
    for run in ("single", "multi"):
        state = json.loads((tmp_path / run / "state.json").read_text())
        assert state["epoch"] == 2 and state["stopped_early"], state
        model = load_model(tmp_path / run / "last.keras")
        assert model.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"
        assert model.get_layer("steering").dtype_policy.name == "float32"
        assert [layer.rate for layer in model.layers if "dropout" in layer.name] == [0.3] * 4
    w0, w1 = _weights(tmp_path / "multi", 0, 4), _weights(tmp_path / "multi", 1, 4)
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])


def test_two_workers_train_and_resume_from_the_chiefs_checkpoint(tmp_path):
    synthetic_log(tmp_path / "frames", n=40)  # written once, read by both workers
    out = tmp_path / "run"
    options = dict(batch_size=4, crop=[4, 4], seed=5, early_stopping=0, workers=2, epoch_samples=0)
    first = _run_workers(tmp_path, out, epochs=1, **options)
    assert first[0]["num_train"] == 32 and first[0]["num_val"] == 8
    second = _run_workers(tmp_path, out, epochs=2, resume=True)
    h0, h1 = second[0]["history"], second[1]["history"]
    # The second run continued: epoch 1 comes from the checkpoint's history, only epoch 2 was trained.
    assert h0 == h1 and len(h0["loss"]) == 2 and h0["loss"][0] == pytest.approx(first[0]["history"]["loss"][0])
    w0, w1 = _weights(out, 0, 2), _weights(out, 1, 2)
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    after_first = _weights(out, 0, 1)
    assert any(not np.array_equal(after_first[k], w0[k]) for k in w0.files)  # epoch 2 moved the weights
    from e2e_drive.models import load_model, pilotnet

    start = pilotnet((40, 80, 3), crop=(4, 4), seed=5).get_weights()
    assert any(not np.allclose(a, after_first[k]) for a, k in zip(start, after_first.files))
    # 32 training rows, 16 per worker: 4 steps of 4 rows per epoch, 2 epochs.
    assert int(load_model(out / "last.keras", compile=True).optimizer.iterations.numpy()) == 8
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    assert json.loads((out / "config.json").read_text())["epochs"] == 2


def test_the_multiworker_loop_runs_fits_own_step(tmp_path):
    """One worker under MultiWorkerMirroredStrategy and one device under fit, same data and seed: the same
    step (Keras' train_step, with dropout and a throttle head) gives the same history and the same weights."""
    synthetic_log(tmp_path / "frames", n=40)
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    options = dict(epochs=2, batch_size=4, crop=[4, 4], seed=3, dropout=0.2, augment=False, early_stopping=0,
                   epoch_samples=0, select_by="val_loss", targets=["steering", "throttle"], verbose=0)
    cluster = {"worker": [f"127.0.0.1:{_free_ports(1)[0]}"]}
    runs = {"fit": {**ENV}, "multiworker": {**ENV, "TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": 0}})}}
    results = {}
    for index, (name, env) in enumerate(runs.items()):
        run_options = {**options, **({"strategy": "multiworker"} if name == "multiworker" else {})}
        done = subprocess.run([sys.executable, str(script), str(index), str(tmp_path / "frames"),
                               str(tmp_path / name), json.dumps(run_options)], env=env, capture_output=True,
                              timeout=240)
        assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
        results[name] = (json.loads((tmp_path / f"result_{index}_2.json").read_text()), _weights(tmp_path / name,
                                                                                               index, 2))
    (fit, fit_weights), (loop, loop_weights) = results["fit"], results["multiworker"]
    assert sorted(fit["history"]) == sorted(loop["history"])
    assert "throttle_rmse" in fit["history"] and "val_steering_loss" in fit["history"]
    for key, values in fit["history"].items():
        np.testing.assert_allclose(loop["history"][key], values, rtol=1e-4, err_msg=key)
    assert fit["history"]["loss"][0] != fit["history"]["loss"][1]  # it trained
    for key in fit_weights.files:
        np.testing.assert_allclose(loop_weights[key], fit_weights[key], rtol=1e-4, atol=1e-6)


def test_two_workers_refuse_worker_processes(tmp_path):
    from e2e_drive.train import train

    log = synthetic_log(tmp_path / "frames", n=8)
    # Without TF_CONFIG, MultiWorkerMirroredStrategy is one local worker: the same refusal.
    with pytest.raises(ValueError, match="--worker-processes: not supported with --strategy multiworker"):
        train(log, tmp_path / "run", strategy="multiworker", worker_processes=True, workers=2, verbose=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("tf_config,message", [
    ('{"cluster": {"worker": ["h0:2222"]', r"TF_CONFIG: not JSON \(Expecting ',' delimiter at character 34\)"),
    ('["worker"]', r'TF_CONFIG: expected an object with a "cluster" and a "task" object \(e\.g\. .*\)'),
    ('{"cluster": {"worker": ["h0"]}, "task": {"type": "worker", "index": 0}}',
     r"TF_CONFIG: cluster 'worker' must be a list of \"host:port\" addresses, got \['h0'\]"),
    ('{"cluster": {"worker": ["h0:1", "h1:1"]}, "task": {"type": "chief", "index": 0}}',
     r"TF_CONFIG: task type 'chief' is not a role of the cluster \(worker\)"),
    ('{"cluster": {"worker": ["h0:1", "[::1]:2"]}, "task": {"type": "worker", "index": 2}}',
     r"TF_CONFIG: task index 2 is not one of the 2 worker address\(es\) \(0..1\)"),
])
def test_a_malformed_tf_config_is_named_before_any_cluster_is_waited_for(tf_config, message):
    from e2e_drive.train import check_tf_config

    with pytest.raises(ValueError, match=f"^{message}$"):
        check_tf_config(tf_config)


def test_the_cli_names_a_malformed_tf_config_in_one_line(tmp_path):
    env = {**ENV, "TF_CONFIG": '{"cluster": {"worker": ["h0:2222"]'}
    done = subprocess.run([sys.executable, "-m", "e2e_drive", "train", str(tmp_path / "none"), "--out",
                           str(tmp_path / "run"), "--strategy", "multiworker"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: TF_CONFIG: not JSON (Expecting ',' delimiter at character 34)\n", done.stderr
    check_tf_config_ok = '{"cluster": {"worker": ["h0:1", "[::1]:2"]}, "task": {"type": "worker", "index": 1}}'
    from e2e_drive.train import check_tf_config

    check_tf_config(check_tf_config_ok)  # an IPv6 address and the last index are fine


MIRRORED_SCRIPT = """
import sys, json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from tests.builders import synthetic_log
from e2e_drive.train import train, make_strategy

strategy = make_strategy("mirrored")
assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
log = synthetic_log(Path(sys.argv[1]), n=24)
result = train(log, sys.argv[2], epochs=2, batch_size=8, crop=(4, 4), strategy="mirrored", verbose=0, dropout=0.2,
               epoch_samples=0)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": result.history["loss"]}))
"""


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "frames"), str(tmp_path / "run")], env=ENV,
                          capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert report["replicas"] == 2 and len(report["loss"]) == 2 and np.isfinite(report["loss"]).all()
    assert (tmp_path / "run" / "last.keras").is_file()
