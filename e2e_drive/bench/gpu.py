"""``e2e-drive bench gpu``: the figures only a GPU gives, each against its baseline measured in the same run.

1. Train step rate of PilotNet on one in-memory batch: on the GPU vs on the CPU (``tf.device("/CPU:0")``),
   and on the GPU with ``mixed_float16`` vs float32.
2. TensorRT engines (fp32, fp16, int8 from the Q/DQ ONNX) built with ``deploy.export``: batch-1 latency,
   batch-32 throughput and parity vs Keras, next to the Keras model on the same GPU.
3. The input pipeline feeding ``model.fit``: images/s of ``DrivingDataset`` (default augmentation, memory
   cache) with one worker vs N worker processes, next to ``train_on_batch`` on one in-memory batch.

Without a GPU the report says why (``report["unavailable"]``) and holds what this machine can measure:
the CPU step rate and the input pipeline. Without TensorRT the engine figures are left out, with the reason.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from data_tools.errors import first_line

log = logging.getLogger(__name__)

FRAME_SHAPE = (160, 320, 3)
TRT_PRECISIONS = ("fp32", "fp16", "int8")
INSTALL_TENSORRT = "pip install -e .[tensorrt]"


def gpu_unavailable_reason() -> str | None:
    """Why TensorFlow sees no NVIDIA GPU here, or None when it sees one."""
    import tensorflow as tf  # heavy: imported only when measuring

    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not tf.config.list_physical_devices("GPU"):
        if hidden is not None and hidden.strip() in ("", "-1"):
            return f"no NVIDIA GPU visible to TensorFlow (CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU)"
        if not tf.test.is_built_with_cuda():
            return "no NVIDIA GPU visible to TensorFlow (this TensorFlow is built without CUDA)"
        return ("no NVIDIA GPU visible to TensorFlow (no CUDA device or driver found; on a GPU machine "
                "pip install 'tensorflow[and-cuda]')")
    return None


def tensorrt_unavailable_reason() -> str | None:
    """Why no TensorRT engine can be built and run here, or None."""
    from deploy import tensorrt

    reason = tensorrt.unavailable_reason()
    if reason is None:
        return None
    return f"{reason} ({INSTALL_TENSORRT})" if "not installed" in reason else reason


def _allow_memory_growth() -> None:
    # TensorFlow maps nearly all GPU memory on first use; TensorRT's builder and the engine's buffers need
    # some in the same process.
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the GPU is already initialised: its memory policy is set for this process
            log.warning("GPU already initialised: TensorFlow may hold most of its memory (set "
                        "TF_FORCE_GPU_ALLOW_GROWTH=true before starting)")


def device_info() -> dict[str, Any]:
    """The GPU (name, compute capability), TensorFlow/TensorRT versions and CPU count of this run."""
    import tensorflow as tf

    info: dict[str, Any] = {"tensorflow": tf.__version__, "cpu_count": os.cpu_count(), "gpu": None,
                            "compute_capability": None, "tensorrt": None}
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info["gpu"] = details.get("device_name", gpus[0].name)
        capability = details.get("compute_capability")
        info["compute_capability"] = ".".join(map(str, capability)) if capability else None
        info["gpus"] = len(gpus)
    try:
        import tensorrt as trt  # optional dependency

        info["tensorrt"] = trt.__version__
    except ImportError:
        pass
    return info


def _model(frame_shape: Sequence[int]):
    import keras

    from e2e_drive.models import pilotnet

    model = pilotnet(tuple(frame_shape), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
    return model


def train_step_rate(device: str, frames: np.ndarray, steering: np.ndarray, steps: int,
                    policy: str = "float32") -> float:
    """Train steps per second of PilotNet on one in-memory batch, every op and variable on ``device``.

    ``device`` is a TensorFlow device ("/CPU:0", "/GPU:0"); ``policy`` a Keras dtype policy
    ("float32", "mixed_float16"). The batch is copied to the device once; two warm-up steps trace the step
    and build the optimizer. Each ``train_on_batch`` returns the loss to the host, so every step is waited for.
    """
    import keras
    import tensorflow as tf

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        with tf.device(device):
            keras.utils.set_random_seed(0)
            model = _model(frames.shape[1:])
            x, y = tf.identity(tf.constant(frames)), tf.identity(tf.constant(steering))
            for _ in range(2):
                model.train_on_batch(x, y)
            start = time.perf_counter()
            for _ in range(steps):
                loss = model.train_on_batch(x, y)
            seconds = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if not np.isfinite(loss):
        raise ValueError(f"train step on {device} with {policy} gave a non-finite loss {loss}")
    return steps / seconds


def _synthetic_log(folder: Path, n: int, frame_shape: Sequence[int], seed: int = 0):
    """``n`` random frames written as JPEGs (the dataset decodes real files) with random steering."""
    from data_tools.frames import write_frame
    from data_tools.log import DrivingLog

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"center_{i:05d}.jpg"
        write_frame(path, rng.integers(0, 256, tuple(frame_shape), dtype=np.uint8))
        paths.append(str(path))
    return DrivingLog.from_columns(center=paths, steering=rng.uniform(-0.5, 0.5, n), source=str(folder / "log.csv"),
                                   row=np.arange(1, n + 1))


def fit_images_per_s(dataset, device: str, epochs: int = 2, model=None) -> float:
    """Images/s of the last epoch of ``model.fit(dataset)`` on ``device`` (the first epoch includes tracing).

    ``model``: a compiled model built under ``tf.device(device)``; defaults to a new PilotNet.
    """
    import keras
    import tensorflow as tf

    from e2e_drive.bench.train import epoch_seconds

    with tf.device(device):
        if model is None:
            keras.utils.set_random_seed(0)
            model = _model(dataset.frame_shape)
        # The dataset shuffles itself from its seed; fit's own shuffle would reorder it with unseeded `random`.
        seconds = epoch_seconds(model, dataset, epochs, shuffle=False)
    images = len(dataset) * dataset.batch_size if dataset.drop_remainder else len(dataset.log)
    return images / seconds


def _measure_pipeline(folder: Path, device: str, batch_size: int, steps: int, workers: int,
                      frame_shape: Sequence[int]) -> dict[str, Any]:
    import tensorflow as tf

    from data_tools.augment import default_augmentation
    from data_tools.dataset import DrivingDataset

    driving_log = _synthetic_log(folder, batch_size * steps, frame_shape)
    def dataset(**workers_kwargs):
        return DrivingDataset(driving_log, batch_size, augment=default_augmentation(), cache="memory", seed=0,
                              drop_remainder=True, progress=False, **workers_kwargs)

    one, many = dataset(), dataset(workers=workers, use_multiprocessing=True)
    with tf.device(device):
        model = _model(frame_shape)  # one model for both runs: the second one's step is already traced
    single = fit_images_per_s(one, device, model=model)
    parallel = fit_images_per_s(many, device, model=model)
    return {"device": device, "workers": workers, "one_worker_images_per_s": single,
            "worker_processes_images_per_s": parallel, "processes_vs_one": parallel / single}


def _measure_tensorrt(folder: Path, frame_shape: Sequence[int], runs: int) -> dict[str, Any]:
    """Each engine through ``deploy.export`` (build + parity vs Keras) and ``load_predictor`` (latency)."""
    import tensorflow as tf

    from deploy import export, load_predictor
    from e2e_drive.bench.latency import bench_frames, time_predictor

    keras_path = folder / "pilotnet.keras"
    _model(frame_shape).save(keras_path)
    frames = bench_frames(frame_shape, count=64)
    results: dict[str, Any] = {}
    # Keras' float32 convolutions run in TF32 on Ampere and newer: the fp32 parity reference must be float32.
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        results["keras"] = time_predictor(load_predictor(keras_path), frames, runs=runs)
        for precision in TRT_PRECISIONS:
            plan = folder / f"pilotnet_{precision}.plan"
            try:
                report = export(keras_path, "tensorrt", plan, trt_precision=precision, parity_frames=32)
                if not (report.tensorrt or {}).get("engine_built"):
                    raise ValueError(f"{plan}: no engine was built: {'; '.join(report.notes)}")
                entry = time_predictor(load_predictor(plan), frames, runs=runs)
                entry["engine_mb"] = round(os.path.getsize(plan) / 2**20, 2)
                entry["build_and_parity_s"] = report.seconds
                entry["parity"] = {k: report.parity[k] for k in ("max_abs_diff", "mean_abs_diff", "frames",
                                                                 "tolerance", "passed")}
                entry["vs_keras_p50"] = results["keras"]["p50_ms"] / entry["p50_ms"]
            except Exception as error:  # one failed engine must not lose the others' figures; the error is reported
                log.warning("TensorRT %s: %s", precision, error)
                entry = {"error": f"{type(error).__name__}: {first_line(error)}"}
            results[precision] = entry
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
    return results


def bench_gpu(steps: int = 20, *, batch_size: int = 64, workers: int | None = None,
              frame_shape: Sequence[int] = FRAME_SHAPE, latency_runs: int = 200,
              say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the GPU figures listed in the module docstring and return them as one dict.

    Args:
        steps: timed train steps per configuration, and batches per epoch of the pipeline runs. Defaults to `20`.
        batch_size: samples per step. Defaults to `64`.
        workers: worker processes of the pipeline run; defaults to ``min(8, os.cpu_count())``.
        frame_shape: the frames (H, W, 3); defaults to the Udacity simulator's 160x320.
        latency_runs: batch-1 calls per TensorRT latency figure. Defaults to `200`.
        say: progress messages (the CLI passes its stderr logger). Defaults to the module's logger.

    Returns:
        ``{"device", "config", "train", "mixed_precision", "tensorrt", "pipeline", "unavailable"}``; a
        section that could not run is ``{"skipped": reason}`` and its reason is also in ``unavailable``.
    """
    if steps < 1 or batch_size < 1 or latency_runs < 1 or (workers is not None and workers < 1):
        raise ValueError(f"Expected steps, batch_size, latency_runs, workers >= 1. Received: steps={steps}, "
                         f"batch_size={batch_size}, latency_runs={latency_runs}, workers={workers}")
    say = say or log.info
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    gpu_reason = gpu_unavailable_reason()
    if gpu_reason is None:
        _allow_memory_growth()
    unavailable = [reason for reason in (gpu_reason, tensorrt_unavailable_reason()) if reason]
    trt_reason = "; ".join(unavailable) or None  # an engine needs both the GPU and TensorRT
    report: dict[str, Any] = {
        "device": device_info(),
        "config": {"steps": steps, "batch_size": batch_size, "frame_shape": list(frame_shape), "workers": workers,
                   "model": "PilotNet (elu, keras conv), random weights"},
        "unavailable": unavailable,
    }
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (batch_size, *frame_shape), dtype=np.uint8)
    steering = rng.uniform(-0.5, 0.5, (batch_size, 1)).astype(np.float32)

    say("train step rate on the CPU (float32)")
    cpu = train_step_rate("/CPU:0", frames, steering, steps)
    train: dict[str, Any] = {"cpu_steps_per_s": cpu, "cpu_images_per_s": cpu * batch_size}
    if gpu_reason is None:
        say("train step rate on the GPU (float32)")
        gpu = train_step_rate("/GPU:0", frames, steering, steps)
        train.update(gpu_steps_per_s=gpu, gpu_images_per_s=gpu * batch_size, gpu_vs_cpu=gpu / cpu)
        say("train step rate on the GPU (mixed_float16)")
        mixed = train_step_rate("/GPU:0", frames, steering, steps, policy="mixed_float16")
        report["mixed_precision"] = {"float32_steps_per_s": gpu, "mixed_float16_steps_per_s": mixed,
                                     "mixed_vs_float32": mixed / gpu}
    else:
        train.update(gpu_steps_per_s=None, gpu_images_per_s=None, gpu_vs_cpu=None)
        report["mixed_precision"] = {"skipped": gpu_reason}
    report["train"] = train

    device = "/CPU:0" if gpu_reason else "/GPU:0"
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        say(f"input pipeline: model.fit on {device}, 1 worker vs {workers} worker processes")
        pipeline_folder = Path(tmp) / "log"
        pipeline_folder.mkdir()
        report["pipeline"] = _measure_pipeline(pipeline_folder, device, batch_size, steps, workers, frame_shape)
        # The same model's train_on_batch on one in-memory batch: the step rate without any input pipeline.
        report["pipeline"]["train_on_batch_images_per_s"] = train["gpu_images_per_s"] or train["cpu_images_per_s"]
        if trt_reason is None:
            say("TensorRT engines fp32, fp16, int8: build, parity vs Keras, latency")
            report["tensorrt"] = _measure_tensorrt(Path(tmp), frame_shape, latency_runs)
        else:
            report["tensorrt"] = {"skipped": trt_reason}
    return report


def format_gpu_report(report: dict[str, Any]) -> str:
    """The human-readable table of ``bench_gpu``'s report."""
    device, config = report["device"], report["config"]
    gpu = (f"{device['gpu']} (compute {device['compute_capability']})" if device["gpu"]
           else "none")
    lines = [f"GPU: {gpu}; TensorFlow {device['tensorflow']}, TensorRT {device['tensorrt'] or 'not installed'}, "
             f"{device['cpu_count']} CPUs",
             f"PilotNet {config['frame_shape'][1]}x{config['frame_shape'][0]}, batch {config['batch_size']}, "
             f"{config['steps']} timed steps"]
    lines += [f"unavailable: {reason}" for reason in report["unavailable"]]
    train = report["train"]
    lines.append(f"train step, CPU float32        : {train['cpu_steps_per_s']:8.2f} steps/s "
                 f"({train['cpu_images_per_s']:.0f} images/s)")
    if train["gpu_steps_per_s"] is not None:
        lines.append(f"train step, GPU float32        : {train['gpu_steps_per_s']:8.2f} steps/s "
                     f"({train['gpu_images_per_s']:.0f} images/s), x{train['gpu_vs_cpu']:.1f} the CPU")
    mixed = report["mixed_precision"]
    if "skipped" not in mixed:
        lines.append(f"train step, GPU mixed_float16  : {mixed['mixed_float16_steps_per_s']:8.2f} steps/s, "
                     f"x{mixed['mixed_vs_float32']:.2f} float32")
    pipe = report["pipeline"]
    lines.append(f"input pipeline (fit on {pipe['device']}): 1 worker {pipe['one_worker_images_per_s']:.0f} images/s, "
                 f"{pipe['workers']} worker processes {pipe['worker_processes_images_per_s']:.0f} images/s "
                 f"(x{pipe['processes_vs_one']:.2f}); train_on_batch on one in-memory batch "
                 f"{pipe['train_on_batch_images_per_s']:.0f} images/s")
    trt = report["tensorrt"]
    if "skipped" not in trt:
        keras = trt["keras"]
        lines.append(f"{'engine':<8}{'p50 ms':>9}{'p99 ms':>9}{'fps@32':>9}{'max|diff|':>11}  parity")
        lines.append(f"{'keras':<8}{keras['p50_ms']:>9.3f}{keras['p99_ms']:>9.3f}{keras['throughput_fps']:>9.0f}"
                     f"{'-':>11}  reference (GPU, float32, TF32 off)")
        for precision in TRT_PRECISIONS:
            entry = trt[precision]
            if "error" in entry:
                lines.append(f"{precision:<8}error: {entry['error']}")
                continue
            parity = entry["parity"]
            verdict = ("reported (int8)" if parity["tolerance"] is None
                       else f"{'PASS' if parity['passed'] else 'FAIL'} (tolerance {parity['tolerance']:g})")
            lines.append(f"{precision:<8}{entry['p50_ms']:>9.3f}{entry['p99_ms']:>9.3f}"
                         f"{entry['throughput_fps']:>9.0f}{parity['max_abs_diff']:>11.2e}  {verdict}")
    return "\n".join(lines)
