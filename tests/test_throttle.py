"""Steering and throttle (issue 13): the config, the batches, training two heads, evaluate, export and the sim.

One two-target training run (module fixture) feeds the evaluate, export and resume tests.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from data_tools.augment import ChooseCamera, Compose, HorizontalFlip, Sample, Translate, default_augmentation
from data_tools.dataset import DrivingDataset
from data_tools.frames import read_frame
from tests.builders import CROP, LOG_FRAME, config_of_version, synthetic_log

TARGETS = ("steering", "throttle")


@pytest.fixture(scope="module")
def throttle_log(tmp_path_factory):
    return synthetic_log(tmp_path_factory.mktemp("frames"), learnable_throttle=True)


@pytest.fixture(scope="module")
def two_head_run(throttle_log, tmp_path_factory):
    from e2e_drive.train import train

    out = tmp_path_factory.mktemp("runs") / "run"
    result = train(throttle_log, out, epochs=8, batch_size=8, crop=CROP, augment=False, early_stopping=0,
                   select_by="val_loss",
                   targets=TARGETS, loss_weights={"throttle": 0.5}, verbose=0)
    return result


# ----------------------------------------------------------------------------- config

def test_config_round_trip_with_targets_and_old_files_still_load():
    from e2e_drive.train_config import CONFIG_VERSION, TrainConfig, TrainConfigError, parse_loss_weights

    config = TrainConfig(data=("a",), targets="steering,throttle", loss_weights=parse_loss_weights("throttle=0.25"))
    assert config.targets == TARGETS and config.weights == {"steering": 1.0, "throttle": 0.25}
    payload = json.loads(config.to_json())
    assert payload["targets"] == list(TARGETS) and payload["loss_weights"] == {"steering": 1.0, "throttle": 0.25}
    assert TrainConfig.from_json(config.to_json()) == config
    assert TrainConfig().targets == ("steering",) and TrainConfig().weights == {"steering": 1.0}

    # A config.json written before targets existed (version 1) loads as a steering-only run.
    old = config_of_version(TrainConfig(data=("a",)), 1)
    assert "targets" not in old and "lr_schedule" not in old
    loaded = TrainConfig.from_dict(old)
    # ... and keeps the labels it was trained on (no automatic smoothing, the fixed side correction, no
    # viewpoint shifts, one pass per epoch).
    assert loaded == TrainConfig(data=("a",), smooth_seconds=0.0, side_correction=0.2, viewpoint_shift=0.0,
                                 epoch_samples=0, select_by="val_loss", car="udacity", lr_schedule="constant")
    assert loaded.version == CONFIG_VERSION
    with pytest.raises(TrainConfigError, match="version 1 has no field.*targets"):
        TrainConfig.from_dict({**old, "targets": ["steering"]})

    refused = config.resume_differences({"targets": ("steering",)})
    assert refused == ["--targets: saved steering,throttle, given steering"]
    assert config.resume_differences({"targets": "steering,throttle", "epochs": 3}) == []


@pytest.mark.parametrize("options,message", [
    (dict(targets="throttle"), "--targets: expected a comma-separated subset of steering, throttle, each once, "
                               "steering first (steering or steering,throttle), got throttle"),
    (dict(targets=()), "--targets: expected"),
    (dict(targets="steering,steering"), "--targets: expected"),
    (dict(targets="steering,brake"), "--targets: unknown target(s) 'brake'"),
    (dict(loss_weights={"throttle": 1.0}), "--loss-weights: throttle is not trained (--targets steering)"),
    (dict(targets=TARGETS, loss_weights="steering=0,throttle=0"), "--loss-weights: every weight is 0"),
    (dict(loss_weights={"steering": math.nan}), "--loss-weights: steering: expected a finite number >= 0, got nan"),
    (dict(loss_weights="steering=-1"), "--loss-weights: steering: expected a finite number >= 0, got -1"),
    (dict(loss_weights="steering"), "--loss-weights: expected TARGET=WEIGHT"),
    (dict(loss_weights="steering=x"), "--loss-weights: steering: expected a finite number >= 0, got 'x'"),
    (dict(loss_weights="brake=1"), "--loss-weights: unknown target 'brake'"),
])
def test_invalid_targets_and_weights_name_the_flag(options, message):
    from e2e_drive.train_config import TrainConfig, TrainConfigError

    with pytest.raises(TrainConfigError) as error:
        TrainConfig(**options)
    assert str(error.value).startswith(message)


# ----------------------------------------------------------------------------- augmentation and batches

def test_every_augmentation_leaves_the_throttle_unchanged():
    frame = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    views = {"center": frame, "left": frame[::-1], "right": frame[:, ::-1]}
    chains = [default_augmentation(), Compose([ChooseCamera(p=1.0), HorizontalFlip(p=1.0), Translate(p=1.0)])]
    steered = 0
    for chain in chains:
        for seed in range(40):
            out = chain(Sample(steering=0.1, views=views, throttle=0.4321), np.random.default_rng(seed))
            assert out.throttle == 0.4321  # exact: no transform touches it
            steered += out.steering != 0.1
    assert steered > 40  # while the steering did change


def test_batches_carry_the_logs_throttle_untouched_by_augmentation(throttle_log):
    plain = DrivingDataset(throttle_log, 8, augment=None, shuffle=False, progress=False)
    augmented = DrivingDataset(throttle_log, 8, augment=default_augmentation(), seed=4, progress=False, targets=TARGETS)
    frames, steering = plain[0]
    assert isinstance(steering, np.ndarray) and steering.shape == (8,)  # steering-only batches as before
    changed = 0
    for index in range(len(augmented)):
        frames, labels = augmented.batch(0, index)
        assert list(labels) == list(TARGETS) and labels["throttle"].dtype == np.float32
        rows = augmented.order(0)[index * 8 : (index + 1) * 8]
        np.testing.assert_array_equal(labels["throttle"], throttle_log.throttle[rows])
        changed += int(np.sum(labels["steering"] != throttle_log.steering[rows]))
    assert changed > 10


def _keras_epoch(ds):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(ds, shuffle=False)
    adapter.on_epoch_begin()
    batches = list(adapter.get_numpy_iterator())
    adapter.on_epoch_end()
    return batches


def test_one_thread_and_two_worker_processes_give_identical_throttle_batches(throttle_log):
    reference = DrivingDataset(throttle_log, 8, augment=default_augmentation(), seed=1, progress=False,
                               targets=TARGETS)
    processes = DrivingDataset(throttle_log, 8, augment=default_augmentation(), seed=1, workers=2,
                               use_multiprocessing=True, progress=False, targets=TARGETS)
    got = _keras_epoch(processes)
    expected = [reference.batch(0, i) for i in range(len(reference))]
    assert len(got) == len(expected)
    for (frames, labels), (want_frames, want_labels) in zip(got, expected):
        np.testing.assert_array_equal(frames, want_frames)
        for target in TARGETS:
            np.testing.assert_array_equal(labels[target], want_labels[target])
        # Through the worker processes' shared memory, throttle included.
        assert np.shares_memory(labels["throttle"], processes._shared_slots._flat)
    tf_batches = list(reference.to_tf_dataset(epochs=1, first_epoch=0))
    for (frames, labels), (want_frames, want_labels) in zip(tf_batches, expected):
        np.testing.assert_array_equal(frames.numpy(), want_frames)
        assert sorted(labels) == sorted(TARGETS)
        for target in TARGETS:
            np.testing.assert_array_equal(labels[target].numpy(), want_labels[target])


# ----------------------------------------------------------------------------- training, evaluate, export

def test_two_target_training_lowers_both_losses(two_head_run, throttle_log):
    from e2e_drive.models import load_model, output_names
    from e2e_drive.train_config import TrainConfig

    history = two_head_run.history
    assert sorted(history) == sorted(["loss", "steering_loss", "steering_rmse", "throttle_loss", "throttle_rmse",
                                      "val_loss", "val_steering_loss", "val_steering_rmse", "val_throttle_loss",
                                      "val_throttle_rmse"])
    for target in TARGETS:
        assert history[f"{target}_loss"][-1] < 0.5 * history[f"{target}_loss"][0], (target, history)
    # The loss is the weighted sum of the heads' losses.
    for epoch in range(len(history["loss"])):
        assert history["val_loss"][epoch] == pytest.approx(
            history["val_steering_loss"][epoch] + 0.5 * history["val_throttle_loss"][epoch], rel=1e-4)
    # The throttle head beats predicting the mean throttle of the validation rows.
    _, val_log = throttle_log.split(0.2)
    assert two_head_run.val_throttle_rmse < np.std(val_log.throttle)
    best = int(np.argmin(history["val_loss"]))
    assert two_head_run.val_rmse == pytest.approx(history["val_steering_rmse"][best])
    run = two_head_run.run_dir
    config = TrainConfig.from_json(open(f"{run}/config.json").read())
    assert config.targets == TARGETS and config.weights == {"steering": 1.0, "throttle": 0.5}
    assert output_names(load_model(two_head_run.best_model_path)) == TARGETS


def test_resume_with_other_targets_is_refused_and_with_the_same_continues(two_head_run, throttle_log, tmp_path):
    import shutil

    from e2e_drive.run_dir import RunDirError
    from e2e_drive.train import train

    run = tmp_path / "run"
    shutil.copytree(two_head_run.run_dir, run)
    with pytest.raises(RunDirError, match=r"--targets: saved steering,throttle, given steering"):
        train(throttle_log, run, resume=True, targets=("steering",), verbose=0)
    with pytest.raises(RunDirError, match=r"--loss-weights: saved steering=1,throttle=0.5, given steering=1,thr"):
        train(throttle_log, run, resume=True, loss_weights={"throttle": 1.0}, verbose=0)
    resumed = train(throttle_log, run, resume=True, epochs=9, verbose=0)
    assert len(resumed.history["val_throttle_rmse"]) == 9


def test_evaluate_reports_throttle_next_to_the_mean_baseline(two_head_run, throttle_log, tmp_path):
    from e2e_drive.evaluate import evaluate, format_report
    from e2e_drive.models import load_model

    model = load_model(two_head_run.best_model_path)
    frames = np.stack([read_frame(p) for p in throttle_log.images["center"]])
    expected = {k: np.asarray(v, np.float64).reshape(-1) for k, v in model.predict(frames, verbose=0).items()}
    report = evaluate(two_head_run.best_model_path, throttle_log, batch_size=16, plot=str(tmp_path / "p.png"))
    throttle = report["throttle"]
    label = throttle_log.throttle.astype(np.float64)
    assert throttle["count"] == len(label)
    assert throttle["model"]["rmse"] == pytest.approx(np.sqrt(np.mean((expected["throttle"] - label) ** 2)), rel=1e-4)
    assert throttle["model"]["mae"] == pytest.approx(np.mean(np.abs(expected["throttle"] - label)), rel=1e-4)
    assert throttle["model"]["pearson"] == pytest.approx(np.corrcoef(expected["throttle"], label)[0, 1], abs=1e-4)
    assert throttle["mean_baseline"]["rmse"] == pytest.approx(np.std(label), rel=1e-5)
    assert throttle["model"]["rmse"] < throttle["mean_baseline"]["rmse"]
    # The steering report is the one a steering-only model gets.
    steering_rmse = np.sqrt(np.mean((expected["steering"] - throttle_log.steering) ** 2))
    assert report["raw"]["model"]["rmse"] == pytest.approx(steering_rmse, rel=1e-4)
    assert "throttle" in format_report(report)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exported_onnx_predicts_both_outputs_as_keras(two_head_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from deploy import load_predictor
    from deploy.export import export

    frames = np.random.default_rng(0).integers(0, 256, (8, *LOG_FRAME, 3), dtype=np.uint8)
    report = export(two_head_run.best_model_path, "onnx", tmp_path / "model.onnx", frames=frames[:4])
    assert report.passed
    onnx = load_predictor(tmp_path / "model.onnx")
    keras_predictor = load_predictor(two_head_run.best_model_path)
    assert onnx.output_names == keras_predictor.output_names == TARGETS
    got, want = onnx.predict_outputs(frames), keras_predictor.predict_outputs(frames)
    for target in TARGETS:
        np.testing.assert_allclose(got[target], want[target], atol=1e-4)
    assert np.ptp(want["throttle"]) > 0  # not a constant head


# ----------------------------------------------------------------------------- simulator

def _constant_two_head_model(steering: float, throttle: float):
    """A real two-output Keras model on sim frames: constant steering and throttle (zero kernels, set biases)."""
    import keras

    from data_tools.frame_preprocess import FramePreprocess

    inputs = keras.Input((160, 320, 3), dtype="uint8", name="frames")
    x = keras.layers.GlobalAveragePooling2D()(FramePreprocess(crop=(60, 25))(inputs))
    heads = {name: keras.layers.Dense(1, kernel_initializer="zeros",
                                      bias_initializer=keras.initializers.Constant(value), name=name)(x)
             for name, value in (("steering", steering), ("throttle", throttle))}
    return keras.Model(inputs, heads)


def test_sim_drives_at_the_predicted_throttle(tmp_path):
    from deploy import load_predictor
    from e2e_drive.sim import CarParams, drive, make_track
    from e2e_drive.sim.drive import CRUISE_THROTTLE, THROTTLE_ACCEL

    path = tmp_path / "two_heads.keras"
    _constant_two_head_model(0.0, 0.05).save(path)
    predictor = load_predictor(path)
    assert predictor.output_names == TARGETS
    track = make_track(101)
    slow = drive(predictor, [track], laps=1.0, max_seconds=3.0, progress=False)[0]
    # The same steering without a throttle output: the car cruises at the controller's speed.
    cruise = drive(lambda frames: predictor(frames), [track], laps=1.0, max_seconds=3.0, progress=False)[0]
    params = CarParams()
    np.testing.assert_array_equal(cruise.speed, params.speed)
    assert len(cruise.throttle) == 0 and len(slow.throttle) == len(slow.speed) == 30
    np.testing.assert_allclose(slow.throttle, 0.05, atol=1e-6)
    # The documented model: dv/dt = A * throttle - A * CRUISE / v_cruise * v, solved in closed form.
    drag = THROTTLE_ACCEL * CRUISE_THROTTLE / params.speed
    terminal = THROTTLE_ACCEL * 0.05 / drag
    t = np.arange(1, 31) / 10.0
    np.testing.assert_allclose(slow.speed, terminal + (params.speed - terminal) * np.exp(-drag * t), rtol=1e-5)
    assert slow.summary()["mean_speed"] < cruise.summary()["mean_speed"] == pytest.approx(params.speed)
    # Slower, the car covers less of the track in the same time.
    assert slow.laps_completed < cruise.laps_completed


MULTIWORKER_SCRIPT = """
import json, sys
from pathlib import Path
from tests.builders import synthetic_log
from e2e_drive.train import train

log = synthetic_log(Path(sys.argv[1]), learnable_throttle=True)
result = train(log, sys.argv[2], **json.loads(sys.argv[3]))
print(json.dumps(result.history))
"""


def test_multiworker_step_trains_both_heads_like_fit(throttle_log, tmp_path):
    """The custom MultiWorkerMirroredStrategy step (one worker here) reports the same figures as fit: with a
    learning rate of 1e-30 the weights stay put, so both score the validation rows with the same model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from e2e_drive.train import train

    options = dict(epochs=1, batch_size=8, crop=list(CROP), augment=False, learning_rate=1e-30, targets=list(TARGETS),
                   loss_weights={"throttle": 0.5}, verbose=0)
    fit = train(throttle_log, tmp_path / "fit", **options).history
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(repo)}
    env.pop("TF_CONFIG", None)
    frames = Path(throttle_log.images["center"][0]).parent
    done = subprocess.run([sys.executable, "-c", MULTIWORKER_SCRIPT, str(frames), str(tmp_path / "mw"),
                           json.dumps({**options, "strategy": "multiworker"})],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    custom = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(custom) == sorted(fit)
    for key in fit:
        if key.startswith("val_"):
            assert custom[key] == pytest.approx(fit[key], rel=1e-4), key
    assert custom["val_loss"][0] == pytest.approx(custom["val_steering_loss"][0] + 0.5 * custom["val_throttle_loss"][0])
