"""``e2e-drive bench``: each benchmark runs for real (tiny sizes) and its ratios agree with its own figures.

``bench pipeline`` is tested in test_preview.py, ``bench latency`` in test_latency.py, ``bench serve`` with
the server; here: ``layers``, ``train`` and ``sim``, through the CLI's ``--json`` and the library functions.
"""

from __future__ import annotations

import json

import pytest

from e2e_drive.cli import main


def test_bench_sim_json_ratio_is_the_ratio_of_its_rates(capsys):
    assert main(["bench", "sim", "--frames", "10", "--baseline-frames", "1", "--track", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["track_seed"] == 2 and report["frames"] == 10 and report["raycast_frames"] == 1
    assert report["render_fps"] > 0 and report["raycast_fps"] > 0 and report["record_steps_per_second"] > 0
    assert report["speedup_vs_raycast"] == pytest.approx(report["render_fps"] / report["raycast_fps"], rel=0.02)


def test_bench_layers_pairs_each_custom_layer_with_its_builtin():
    from e2e_drive.bench.layers import bench_layers, format_layers_report

    report = bench_layers(batch_size=2, steps=2, input_shape=(24, 32, 3))
    assert set(report["layers"]) == {"Maxout", "PReLU", "ELU", "ReferenceConv2D"}
    for row in report["layers"].values():
        assert row["ours_ms"] > 0 and row["builtin_ms"] > 0
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["builtin_ms"], rel=0.02, abs=0.01)
    text = format_layers_report(report)
    assert all(name in text for name in report["layers"])


def test_bench_train_cli_json_measures_the_dataset_against_tensors(capsys):
    assert main(["bench", "train", "--batch", "2", "--steps", "2", "--variants", "relu", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # exactly one JSON object: Keras' output went to stderr
    pipe = report["input_pipeline"]
    assert pipe["tensors_images_per_s"] > 0 and pipe["dataset_images_per_s"] > 0
    assert "viewpoint shifts" in pipe["augmentation"] and pipe["augment_images_per_s_by_threads"]["1"] > 0
    assert pipe["dataset_images_per_s"] == pipe["dataset_images_per_s_by_workers"][str(pipe["default_workers"])]
    assert pipe["dataset_vs_tensors"] == pytest.approx(pipe["dataset_images_per_s"] / pipe["tensors_images_per_s"])
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
