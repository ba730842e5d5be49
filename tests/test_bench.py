"""``e2e-drive bench``: each benchmark runs for real (tiny sizes), times what it says it times and fits the clock.

``bench pipeline`` is tested in test_preview.py, ``bench latency`` in test_latency.py, ``bench serve`` with
the server; here: ``layers``, ``train`` and ``sim``, through the CLI's ``--json`` and the library functions.
"""

from __future__ import annotations

import json
import time

import pytest

from e2e_drive.cli import main


def test_bench_sim_rates_fit_the_wall_clock(capsys):
    start = time.perf_counter()
    assert main(["bench", "sim", "--frames", "10", "--baseline-frames", "1", "--track", "2", "--json"]) == 0
    wall = time.perf_counter() - start
    report = json.loads(capsys.readouterr().out)
    assert report["track_seed"] == 2 and report["frames"] == 10 and report["raycast_frames"] == 1
    # The stated rates, turned back into seconds by the test's own clock, cannot exceed what the call took.
    spent = report["frames"] / report["render_fps"] + report["raycast_frames"] / report["raycast_fps"]
    assert 0 < spent <= wall
    assert report["speedup_vs_raycast"] > 1  # the vectorised renderer is the point of the benchmark


def test_bench_layers_pairs_each_custom_layer_with_its_builtin():
    from e2e_drive.bench.layers import bench_layers, format_layers_report

    start = time.perf_counter()
    report = bench_layers(batch_size=2, steps=2, input_shape=(24, 32, 3))
    wall = time.perf_counter() - start
    assert set(report["layers"]) == {"Maxout", "PReLU", "ELU", "ReferenceConv2D"}
    for name, row in report["layers"].items():
        # Like is timed with like: from one seed the custom layer and Keras' built-in give the same first loss.
        assert row["first_loss"]["ours"] == pytest.approx(row["first_loss"]["builtin"], rel=1e-4), name
    timed = sum(report["steps"] * (row["ours_ms"] + row["builtin_ms"]) / 1e3 for row in report["layers"].values())
    assert 0 < timed <= wall
    text = format_layers_report(report)
    assert all(name in text for name in report["layers"])


def test_bench_train_cli_json_measures_the_dataset_against_tensors(capsys):
    start = time.perf_counter()
    assert main(["bench", "train", "--batch", "2", "--steps", "2", "--variants", "relu", "--json"]) == 0
    wall = time.perf_counter() - start
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # exactly one JSON object: Keras' output went to stderr
    pipe = report["input_pipeline"]
    assert pipe["tensors_images_per_s"] > 0 and pipe["dataset_images_per_s"] > 0
    assert "viewpoint shifts" in pipe["augmentation"] and pipe["augment_images_per_s_by_threads"]["1"] > 0
    assert pipe["dataset_images_per_s"] == pipe["dataset_images_per_s_by_workers"][str(pipe["default_workers"])]
    # Rates back to seconds (images each figure says it timed) fit inside the call's own wall time.
    images = report["batch_size"] * report["steps"]  # one epoch, what each rate is measured over
    spent = sum(images / rate for rate in (pipe["tensors_images_per_s"], *pipe["dataset_images_per_s_by_workers"]
                                           .values(), *pipe["augment_images_per_s_by_threads"].values()))
    assert 0 < spent <= wall
    # The baseline variant is always measured, and is 1.0 relative to itself.
    assert set(report["variants"]) == {"elu:keras", "relu:keras"}
    assert report["variants"]["elu:keras"]["relative_to_elu_keras"] == 1.0


def test_bench_commands_refuse_bad_sizes_at_parse_time(capsys):
    for argv in (["bench", "sim", "--frames", "0"], ["bench", "layers", "--steps", "-1"],
                 ["bench", "latency", "m.onnx", "--runs", "nan"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "expected an integer" in capsys.readouterr().err
