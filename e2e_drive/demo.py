"""``e2e-drive demo``: the whole loop in the embedded simulator.

drive (the expert) -> record (Udacity log format) -> read_log -> train PilotNet
-> drive by the network on tracks it has never seen -> measure (NVIDIA's
autonomy) -> export ONNX. The summary goes to ``OUT/summary.json`` and the
driven paths over the track maps to ``OUT/paths.png``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from data_tools.io import write_json
from deploy import export as export_model
from deploy import load_predictor
from e2e_drive.sim import drive, record
from e2e_drive.sim.plot import plot_paths
from e2e_drive.train import train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPreset:
    """Tracks, laps and epochs of a demo run."""

    train_tracks: tuple[int, ...]
    test_tracks: tuple[int, ...]
    record_laps: float
    drive_laps: float
    epochs: int


# Training tracks and unseen test tracks are different seeds.
PRESETS = {
    "default": DemoPreset(train_tracks=(1, 2, 3, 4, 5, 6, 7, 8), test_tracks=(101, 102, 103, 104, 105),
                          record_laps=1.0, drive_laps=2.0, epochs=10),
    "quick": DemoPreset(train_tracks=(1, 2, 3), test_tracks=(101,), record_laps=1.0, drive_laps=0.5, epochs=6),
}


def run_demo(
    out: str | os.PathLike = "runs/demo",
    *,
    quick: bool = False,
    train_tracks: Sequence[int] | None = None,
    test_tracks: Sequence[int] | None = None,
    epochs: int | None = None,
    activation: str = "elu",
    conv: str = "keras",
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    export: bool = True,
    verbose: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Record, train, drive on unseen tracks, export; return (and write) the summary.

    Args:
        out: output folder: ``recordings/``, ``train/``, ``summary.json``, ``paths.png``, ``pilotnet.onnx``.
        quick: the smoke-test preset (one lap on each of 3 tracks, 6 epochs, a half-lap test drive);
            the default records one lap on each of 8 tracks, trains 10 epochs and drives 2 laps on 5 unseen tracks.
        train_tracks: seeds of the tracks to record on. Defaults to the preset's.
        test_tracks: seeds of the unseen tracks to drive on. Defaults to the preset's.
        epochs: training epochs. Defaults to the preset's.
        activation: PilotNet activation (``elu`` or a custom layer such as ``prelu``, ``maxout``).
        conv: convolution implementation (``keras`` or ``reference``).
        batch_size: training batch size.
        learning_rate: Adam learning rate.
        seed: the one seed of recording noise, training and augmentation.
        export: export the trained model to ONNX and drive with the exported file too.
        verbose: Keras verbosity (0 = quiet; Keras prints to stdout).
        progress: progress bars of recording and driving (on stderr).

    Returns:
        The summary dict that is also written to ``out/summary.json``.
    """
    preset = PRESETS["quick" if quick else "default"]
    train_tracks = tuple(preset.train_tracks if train_tracks is None else train_tracks)
    test_tracks = tuple(preset.test_tracks if test_tracks is None else test_tracks)
    if set(train_tracks) & set(test_tracks):
        raise ValueError(f"test tracks must be unseen: {sorted(set(train_tracks) & set(test_tracks))} used for both")
    epochs = preset.epochs if epochs is None else int(epochs)
    out = Path(out).resolve()
    run_dir = out / "train"
    if run_dir.exists():
        # Only an earlier demo's run is replaced, never a training run the user keeps in that folder.
        if not (out / "summary.json").exists() and not (out / "recordings").is_dir():
            raise ValueError(f"{run_dir} exists and is not from an earlier demo; choose another --out")
        log.info("replacing the previous demo run in %s", run_dir)
        shutil.rmtree(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    recordings, recorded_rows = [], 0
    for k, track_seed in enumerate(train_tracks):
        folder = out / "recordings" / f"track_{track_seed}"
        result = record(track_seed, folder, laps=preset.record_laps, seed=seed + k, progress=progress)
        log.info("recorded track %s: %d frames x 3 cameras -> %s", track_seed, result.rows, folder)
        recordings.append(str(folder))
        recorded_rows += result.rows
    record_seconds = time.perf_counter() - started

    # The simulator's car and camera; one pass per epoch: the expert's labels are clean and thousands of rows
    # already drive every unseen track (BENCHMARKS.md "Demo"), so the demo stays about a minute. The demo drives
    # unseen tracks itself below, so training's closed-loop check of the recorded tracks is left out.
    trained = train(recordings, str(run_dir), epochs=epochs, batch_size=batch_size,
                    learning_rate=learning_rate, activation=activation, conv=conv, augment=True,
                    seed=seed, val_fraction=0.2, verbose=verbose, car="sim", epoch_samples=0,
                    check_closed_loop=False)
    model_path = str(trained.best_model_path)
    log.info("trained in %.0f s: val RMSE %.4f -> %s", trained.train_seconds, trained.val_rmse, model_path)

    predictor = load_predictor(model_path)
    network = drive(predictor, list(test_tracks), laps=preset.drive_laps, progress=progress)
    constant = drive(lambda frames: np.zeros(len(frames), np.float32), list(test_tracks), laps=preset.drive_laps,
                     progress=False)

    exported = _export(model_path, out / "pilotnet.onnx") if export else {"skipped": "--no-export"}
    onnx_drive = []
    if "path" in exported:
        # The exported artifact drives too: the same tracks, through deploy.load_predictor.
        onnx_drive = drive(load_predictor(exported["path"]), list(test_tracks), laps=preset.drive_laps,
                           progress=False)
    summary: dict[str, Any] = {
        "train_tracks": list(train_tracks),
        "test_tracks": list(test_tracks),
        "recorded_rows": recorded_rows,
        "recorded_images": 3 * recorded_rows,
        "num_train": int(trained.num_train),
        "num_val": int(trained.num_val),
        "epochs": epochs,
        "activation": activation,
        "conv": conv,
        "record_seconds": round(record_seconds, 1),
        "train_seconds": round(float(trained.train_seconds), 1),
        "val_rmse": float(trained.val_rmse),
        "model": model_path,
        "onnx": exported,
        "drive": [r.summary() for r in network],
        "onnx_drive": [r.summary() for r in onnx_drive],
        "constant_steering": [r.summary() for r in constant],
        "mean_autonomy": float(np.mean([r.autonomy for r in network])),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "summary.json", summary)
    plot_paths(network, out / "paths.png")
    summary["plot"] = str(out / "paths.png")
    return summary


def _export(model_path: str, target: Path) -> dict[str, Any]:
    """Export to ONNX through ``deploy.export``; what it wrote and its parity with Keras."""
    report = export_model(model_path, "onnx", str(target))
    parity = report.parity
    return {"path": str(report.path), "passed": bool(report.passed), "size_bytes": int(report.size_bytes),
            "max_abs_diff": float(parity["max_abs_diff"]), "parity_frames": int(parity["frames"])}


def format_table(summary: dict[str, Any]) -> str:
    """The human-readable summary table."""
    lines = [
        f"data: {summary['recorded_rows']} time steps x 3 cameras from tracks {summary['train_tracks']} "
        f"({summary['num_train']} train / {summary['num_val']} val samples)",
        f"training: {summary['epochs']} epochs, {summary['train_seconds']:.0f} s, val RMSE {summary['val_rmse']:.4f}",
        f"{'unseen track':>12} {'autonomy %':>10} {'interv.':>7} {'laps':>5} {'mean|off| m':>11} "
        f"{'constant-steer %':>16}",
    ]
    for net, const in zip(summary["drive"], summary["constant_steering"]):
        lines.append(f"{net['track_seed']:>12} {net['autonomy']:>10.1f} {net['interventions']:>7d} "
                     f"{net['laps_completed']:>5.2f} {net['mean_abs_offset']:>11.2f} {const['autonomy']:>16.1f}")
    onnx = summary["onnx"]
    if "path" in onnx:
        verdict = "PASS" if onnx["passed"] else "FAIL"
        lines.append(f"ONNX: {onnx['path']} ({onnx['size_bytes'] / 1e6:.2f} MB), max |steering - Keras| "
                     f"{onnx['max_abs_diff']:.2g} on {onnx['parity_frames']} frames -> {verdict}")
    else:
        lines.append(f"ONNX: skipped ({onnx['skipped']})")
    for run in summary.get("onnx_drive", []):
        lines.append(f"  ONNX drives track {run['track_seed']}: autonomy {run['autonomy']:.1f}%, "
                     f"{run['interventions']} interventions")
    return "\n".join(lines)
