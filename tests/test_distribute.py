"""Beyond one device: MirroredStrategy with model.fit, and the multi-worker custom step on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.builders import synthetic_log

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}

WORKER_SCRIPT = """
import json, sys
import numpy as np
from pathlib import Path
from tests.builders import synthetic_log
from e2e_drive.distribute import train_multiworker

index, frames, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = synthetic_log(Path(frames), n=40)
result = train_multiworker(log, out, epochs=2, batch_size=4, crop=(4, 4), seed=5, verbose=0, steps_per_epoch=3)
np.savez(f"{out}/weights_{index}.npz", *result.model.get_weights())
Path(f"{out}/history_{index}.json").write_text(json.dumps(result.history))
"""


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_together_and_agree(tmp_path):
    synthetic_log(tmp_path / "frames", n=40)  # written once, read by both workers
    out = tmp_path / "run"
    out.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = []
    for index in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen([sys.executable, str(script), str(index), str(tmp_path / "frames"), str(out)],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for process in processes:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output.decode()[-3000:]
    w0, w1 = np.load(out / "weights_0.npz"), np.load(out / "weights_1.npz")
    assert len(w0.files) == len(w1.files) > 10
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    h0 = json.loads((out / "history_0.json").read_text())
    h1 = json.loads((out / "history_1.json").read_text())
    assert h0["loss"] == h1["loss"] and len(h0["loss"]) == 2  # the all-reduced loss, the same on both
    # The chief (worker 0) wrote the run; the weights moved from their seeded start.
    for name in ("best.keras", "last.keras", "history.csv", "state.json", "config.json"):
        assert (out / name).is_file(), name
    from e2e_drive.models import pilotnet

    start = pilotnet((40, 80, 3), crop=(4, 4), seed=5).get_weights()
    assert any(not np.allclose(a, w0[k]) for a, k in zip(start, w0.files))


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
result = train(log, sys.argv[2], epochs=2, batch_size=8, crop=(4, 4), strategy="mirrored", verbose=0)
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


RESUME_SCRIPT = """
import json, sys
import numpy as np
from pathlib import Path
from tests.builders import synthetic_log
from e2e_drive.distribute import train_multiworker

index, frames, out, epochs, resume = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
log = synthetic_log(Path(frames), n=40)
result = train_multiworker(log, out, epochs=epochs, batch_size=4, crop=(4, 4), seed=5, verbose=0, steps_per_epoch=3,
                           resume=resume)
np.savez(f"{out}/weights_{index}_{epochs}.npz", *result.model.get_weights())
Path(f"{out}/history_{index}_{epochs}.json").write_text(json.dumps(result.history))
"""


def _run_workers(script: Path, frames: Path, out: Path, epochs: int, resume: bool) -> None:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = []
    for index in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, str(script), str(index), str(frames), str(out), str(epochs), "1" if resume else "0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for process in processes:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output.decode()[-3000:]


def test_two_workers_resume_from_the_chiefs_checkpoint(tmp_path):
    synthetic_log(tmp_path / "frames", n=40)
    out = tmp_path / "run"
    out.mkdir()
    script = tmp_path / "resume_worker.py"
    script.write_text(RESUME_SCRIPT)
    _run_workers(script, tmp_path / "frames", out, epochs=1, resume=False)
    first = json.loads((out / "history_0_1.json").read_text())
    _run_workers(script, tmp_path / "frames", out, epochs=2, resume=True)
    h0 = json.loads((out / "history_0_2.json").read_text())
    h1 = json.loads((out / "history_1_2.json").read_text())
    # The second run continued: epoch 1 comes from the checkpoint's history, only epoch 2 was trained.
    assert h0 == h1 and len(h0["loss"]) == 2 and h0["loss"][0] == first["loss"][0]
    w0, w1 = np.load(out / "weights_0_2.npz"), np.load(out / "weights_1_2.npz")
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    after_first = np.load(out / "weights_0_1.npz")
    assert any(not np.array_equal(after_first[k], w0[k]) for k in w0.files)  # epoch 2 moved the weights
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 epochs
