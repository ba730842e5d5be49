"""Issue 13: what only a GPU can check. ``pytest -m gpu -q`` runs this module alone.

The GPU tests build TensorRT engines (fp32, fp16, int8 from the Q/DQ ONNX) through ``deploy.export`` and run
them through ``load_predictor`` against Keras on the CPU, train with ``mixed_float16``, and compare step rates
and input pipelines. Without a GPU (or TensorRT) each is skipped with the reason, decided once at import and
without importing TensorFlow when the GPU is hidden, so the default run skips them at once. The tests named
``without_gpu`` check that path here: the reasons, the bench's report without a GPU, and the ONNX that
TensorRT would be fed.

On a GPU machine: ``CUDA_VISIBLE_DEVICES=0 pytest -m gpu -q`` (the test suite hides GPUs by default).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.builders import FRAME, synthetic_log, tiny_model

pytestmark = pytest.mark.gpu

# TensorFlow would map nearly all GPU memory on first use; TensorRT's builder and buffers share the process.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

REPO = Path(__file__).resolve().parents[1]
INSTALL_TENSORRT = "pip install -e .[tensorrt]"


def _gpu_reason() -> str | None:
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        # Decided without importing TensorFlow: the default run skips this module in no time.
        return (f"no NVIDIA GPU visible to TensorFlow (CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU; "
                f"on a GPU machine run: CUDA_VISIBLE_DEVICES=0 pytest -m gpu)")
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return "no NVIDIA GPU visible to TensorFlow"
    return None


def _tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return f"tensorrt is not installed ({INSTALL_TENSORRT})"
    if GPU_REASON is not None:
        return GPU_REASON
    from deploy import tensorrt

    return tensorrt.unavailable_reason()  # its GPU-buffer library, the CUDA driver


GPU_REASON = _gpu_reason()
TENSORRT_REASON = _tensorrt_reason()
needs_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
needs_tensorrt = pytest.mark.skipif(GPU_REASON is not None or TENSORRT_REASON is not None,
                                    reason="; ".join(dict.fromkeys(r for r in (GPU_REASON, TENSORRT_REASON) if r)))
without_gpu = pytest.mark.skipif(GPU_REASON is None, reason="a GPU is visible: the no-GPU path is not taken")

# Parity of each engine vs Keras (float32, on the CPU): issue 13's tolerances; int8 is reported, with a
# bound only against garbage (onnxruntime's run of the same Q/DQ graph stays within 3e-3 of Keras here).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": None}
INT8_SANITY = 0.1


def _keras_on_cpu(model, frames: np.ndarray) -> np.ndarray:
    """The float32 reference: Keras on the CPU (on Ampere and newer, GPU float32 convolutions run in TF32)."""
    import tensorflow as tf

    with tf.device("/CPU:0"):
        return np.asarray(model(frames, training=False)).reshape(-1)


def _frames(n: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *FRAME), dtype=np.uint8)


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("trt") / "m.keras"
    model = tiny_model("all", "keras")
    model.save(path)
    return path, model


# ----------------------------------------------------------------------------- TensorRT (GPU + tensorrt)

@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_matches_keras(keras_file, tmp_path, precision, record_property):
    from deploy import export, load_predictor

    path, model = keras_file
    plan = tmp_path / f"m_{precision}.plan"
    report = export(path, "tensorrt", plan, trt_precision=precision, parity_frames=16)
    assert report.tensorrt["engine_built"] is True, report.notes
    assert report.path == str(plan) and plan.stat().st_size > 0
    assert Path(report.tensorrt["onnx"]).is_file()
    predictor = load_predictor(plan)
    assert predictor.runtime == "tensorrt" and predictor.input_shape == FRAME

    frames = _frames(17)  # an odd batch inside the engine's 1..32 profile
    expected = _keras_on_cpu(model, frames)
    got = predictor(frames)
    assert got.shape == (17,) and got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(predictor(frames[:1]), got[:1], atol=1e-5)  # batch 1 = row 0 of a batch
    diff = float(np.abs(got - expected).max())
    record_property(f"tensorrt_{precision}_max_abs_diff", diff)
    print(f"TensorRT {precision}: max |engine - Keras| = {diff:.3g} on 17 frames")
    if TOLERANCE[precision] is None:
        assert diff <= INT8_SANITY, f"int8 engine off by {diff} (Keras: {expected.min():.3f}..{expected.max():.3f})"
        assert report.parity["tolerance"] is None
    else:
        assert diff <= TOLERANCE[precision]
        # export's own parity check, the one `e2e-drive export` prints, passes with the same tolerance.
        assert report.passed and report.parity["tolerance"] == TOLERANCE[precision], report.parity


@needs_tensorrt
def test_tensorrt_batch_outside_the_profile_is_refused(keras_file, tmp_path):
    from deploy import export, load_predictor

    path, _ = keras_file
    plan = tmp_path / "m.plan"
    export(path, "tensorrt", plan, trt_precision="fp32", parity_frames=4)
    predictor = load_predictor(plan)
    assert predictor(_frames(32)).shape == (32,)  # the profile's maximum
    with pytest.raises(ValueError, match="33"):
        predictor(_frames(33))


@needs_tensorrt
def test_tensorrt_predictor_answers_from_another_thread(keras_file, tmp_path):
    """``DriveServer`` calls the predictor from its request threads, not from the thread that loaded it."""
    from deploy import export, load_predictor

    path, model = keras_file
    plan = tmp_path / "m.plan"
    export(path, "tensorrt", plan, trt_precision="fp32", parity_frames=4)
    predictor = load_predictor(plan)
    frames = _frames(4)
    here = predictor(frames)
    answers: list = []

    def call():
        try:
            answers.append(predictor(frames))
        except Exception as error:  # the assertion below shows it
            answers.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(timeout=60)
    assert len(answers) == 1 and not isinstance(answers[0], Exception), answers
    np.testing.assert_allclose(answers[0], here, atol=1e-6)
    np.testing.assert_allclose(here, _keras_on_cpu(model, frames), atol=TOLERANCE["fp32"])


# ----------------------------------------------------------------------------- training on the GPU

@needs_gpu
def test_mixed_float16_training_on_the_gpu_lowers_the_loss(tmp_path):
    from e2e_drive.models import load_model
    from e2e_drive.train import train

    log = synthetic_log(tmp_path / "log", n=64)
    result = train(log, str(tmp_path / "run"), epochs=4, batch_size=16, mixed_precision=True, augment=False,
                   early_stopping=0, verbose=0)
    losses = result.history["loss"]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], losses
    model = load_model(result.best_model_path)
    policies = {layer.dtype_policy.name for layer in model.layers}
    assert "mixed_float16" in policies, policies  # it trained in float16, not in float32 or bfloat16
    assert model.outputs[0].dtype == "float32"  # the steering head stays float32 for the loss


@needs_gpu
def test_train_step_rate_on_the_gpu_beats_the_cpu(record_property):
    from e2e_drive.bench.gpu import FRAME_SHAPE, train_step_rate

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (64, *FRAME_SHAPE), dtype=np.uint8)
    steering = rng.uniform(-0.5, 0.5, (64, 1)).astype(np.float32)
    cpu = train_step_rate("/CPU:0", frames, steering, steps=5)
    gpu = train_step_rate("/GPU:0", frames, steering, steps=20)
    mixed = train_step_rate("/GPU:0", frames, steering, steps=20, policy="mixed_float16")
    record_property("steps_per_s", {"cpu": cpu, "gpu": gpu, "gpu_mixed_float16": mixed})
    print(f"PilotNet 320x160 batch 64: CPU {cpu:.2f}, GPU {gpu:.2f}, GPU mixed_float16 {mixed:.2f} steps/s")
    assert gpu > cpu and mixed > 0


@needs_gpu
def test_input_pipeline_with_worker_processes_feeds_the_gpu(tmp_path, record_property):
    from data_tools.augment import default_augmentation
    from data_tools.dataset import DrivingDataset
    from e2e_drive.bench.gpu import fit_images_per_s
    from tests.builders import LOG_FRAME

    workers = min(8, os.cpu_count() or 1)
    if workers < 4:
        pytest.skip(f"{os.cpu_count()} CPUs: too few for worker processes to show")
    log = synthetic_log(tmp_path / "log", n=20 * 32)

    def dataset(**kwargs):
        return DrivingDataset(log, 32, augment=default_augmentation(), seed=0, drop_remainder=True, progress=False,
                              **kwargs)

    one, many = dataset(), dataset(workers=workers, use_multiprocessing=True)
    # The same seed gives the same batches whatever serves them (forked workers after CUDA is initialised).
    for index in (0, 7):
        np.testing.assert_array_equal(one[index][0], many[index][0])
    single = fit_images_per_s(one, "/GPU:0")
    parallel = fit_images_per_s(many, "/GPU:0")
    record_property("fit_images_per_s", {"one_worker": single, f"{workers}_processes": parallel})
    print(f"fit on the GPU, {LOG_FRAME} frames: 1 worker {single:.0f}, {workers} processes {parallel:.0f} images/s")
    assert parallel > single


@needs_gpu
def test_bench_gpu_reports_every_figure_with_the_card():
    from e2e_drive.bench.gpu import bench_gpu, format_gpu_report

    report = bench_gpu(steps=5, batch_size=32, latency_runs=20)
    assert report["device"]["gpu"]
    if TENSORRT_REASON is None:
        assert report["unavailable"] == [] and report["device"]["tensorrt"]
    assert report["train"]["gpu_vs_cpu"] > 1
    assert report["mixed_precision"]["mixed_float16_steps_per_s"] > 0
    assert report["pipeline"]["device"] == "/GPU:0"
    if TENSORRT_REASON is None:
        for precision in ("fp32", "fp16", "int8"):
            assert "error" not in report["tensorrt"][precision], report["tensorrt"][precision]
    text = format_gpu_report(report)
    assert report["device"]["gpu"] in text
    json.dumps(report)


# ----------------------------------------------------------------------------- the no-GPU path, checked here

@without_gpu
def test_without_gpu_the_skip_reasons_say_what_is_missing():
    assert GPU_REASON.startswith("no NVIDIA GPU visible to TensorFlow")
    if importlib.util.find_spec("tensorrt") is None:
        assert TENSORRT_REASON == f"tensorrt is not installed ({INSTALL_TENSORRT})"
    assert TENSORRT_REASON is not None


@without_gpu
def test_without_gpu_pytest_m_gpu_skips_every_gpu_test_with_its_reason():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-k", "not without_gpu", str(Path(__file__))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert "passed" not in summary and "failed" not in summary and "skipped" in summary, summary
    skipped = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) >= 5 and all("no NVIDIA GPU visible to TensorFlow" in line for line in skipped), skipped


@without_gpu
def test_without_gpu_bench_reports_what_is_unavailable_and_measures_the_cpu():
    from e2e_drive.bench.gpu import bench_gpu, format_gpu_report

    report = bench_gpu(steps=2, batch_size=8, workers=2, frame_shape=FRAME)
    assert report["device"]["gpu"] is None and report["device"]["cpu_count"] == os.cpu_count()
    assert report["unavailable"][0].startswith("no NVIDIA GPU visible to TensorFlow")
    assert report["mixed_precision"] == {"skipped": report["unavailable"][0]}
    assert report["tensorrt"]["skipped"].startswith(report["unavailable"][0])
    if importlib.util.find_spec("tensorrt") is None:
        assert INSTALL_TENSORRT in report["tensorrt"]["skipped"]
    train = report["train"]
    assert train["gpu_steps_per_s"] is None and train["gpu_vs_cpu"] is None
    assert 0 < train["cpu_steps_per_s"] < math.inf
    assert train["cpu_images_per_s"] == pytest.approx(8 * train["cpu_steps_per_s"])
    pipe = report["pipeline"]
    assert pipe["device"] == "/CPU:0" and pipe["workers"] == 2
    assert pipe["one_worker_images_per_s"] > 0 and pipe["worker_processes_images_per_s"] > 0
    assert json.loads(json.dumps(report)) == report  # what `e2e-drive bench gpu --json` prints
    text = format_gpu_report(report)
    assert "GPU: none" in text and f"unavailable: {report['unavailable'][0]}" in text
    assert "steps/s" in text and "TensorRT" in text


def test_without_gpu_bench_rejects_bad_arguments():
    from e2e_drive.bench.gpu import bench_gpu

    with pytest.raises(ValueError, match="steps=0"):
        bench_gpu(steps=0)
    with pytest.raises(ValueError, match="workers=0"):
        bench_gpu(workers=0)


@without_gpu
def test_without_gpu_loading_an_engine_says_why_it_cannot_run(tmp_path):
    from deploy import load_predictor, tensorrt

    assert not tensorrt.available() and tensorrt.unavailable_reason()
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not an engine")
    with pytest.raises(ValueError, match=f"{plan}: cannot run a TensorRT engine here"):
        load_predictor(plan)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_without_gpu_the_onnx_for_tensorrt_takes_float32_nhwc_frames_with_a_dynamic_batch(keras_file, tmp_path,
                                                                                          precision):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    from deploy import export, tensorrt

    path, model = keras_file
    report = export(path, "tensorrt", tmp_path / "m.plan", trt_precision=precision, parity_frames=8)
    onnx_path = report.tensorrt["onnx"]
    assert onnx_path == tensorrt.onnx_path_for(tmp_path / "m.plan")
    proto = onnx.load(onnx_path)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT and dims == [None, *FRAME]  # NHWC, batch dynamic
    out_dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
    assert out.type.tensor_type.elem_type == TensorProto.FLOAT and out_dims == [None, 1]
    assert tensorrt.static_check(proto).ok
    ops = {node.op_type for node in proto.graph.node}
    assert ({"QuantizeLinear", "DequantizeLinear"} <= ops) == (precision == "int8")
    # The batches the engine's profile spans (1..32) run on this graph, frames 0..255 as float32.
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    for batch in (1, 32):
        frames = _frames(batch, seed=batch)
        (steering,) = session.run(None, {inp.name: frames.astype(np.float32)})
        assert steering.shape == (batch, 1)
        tolerance = 1e-4 if precision == "fp32" else INT8_SANITY
        np.testing.assert_allclose(steering.reshape(-1), _keras_on_cpu(model, frames), atol=tolerance)
