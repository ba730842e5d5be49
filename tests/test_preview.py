"""Preview grid, ``data preview`` and ``bench pipeline``: real PNGs, real CLI runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_tools.augment import Compose, HorizontalFlip
from data_tools.frames import read_frame, write_frame
from data_tools.log import DrivingLog
from data_tools.preprocess import preprocess
from data_tools.preview import draw_crop, model_view, preview, preview_samples


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preview")
    rng = np.random.default_rng(0)
    paths = {c: [] for c in ("center", "left", "right")}
    for i in range(6):
        for camera in paths:
            path = folder / f"{camera}_{i}.png"
            write_frame(path, rng.integers(0, 256, (80, 160, 3), dtype=np.uint8))
            paths[camera].append(str(path))
    return DrivingLog.from_columns(center=paths["center"], left=paths["left"], right=paths["right"],
                                   steering=np.linspace(-0.3, 0.3, 6), source=str(folder / "log.csv"), row=range(1, 7))


def test_samples_are_deterministic_and_labelled(log):
    a = preview_samples(log, 5, seed=3)
    b = preview_samples(log, 5, seed=3)
    assert [s.row for s in a] == [s.row for s in b] and len(set(s.row for s in a)) == 5
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        assert x.steering == y.steering and x.original_steering == pytest.approx(log.steering[x.row])
    flipped = preview_samples(log, 3, seed=1, augment=Compose([HorizontalFlip(p=1.0)]))
    for s in flipped:
        np.testing.assert_array_equal(s.image, read_frame(log.images["center"][s.row])[:, ::-1])
        assert s.steering == pytest.approx(-log.steering[s.row])


def test_draw_crop_marks_the_first_and_last_kept_rows():
    image = np.zeros((160, 320, 3), np.uint8)
    marked = draw_crop(image, (60, 25))
    assert np.flatnonzero(marked[:, 0, 0]).tolist() == [60, 134]
    assert not image.any()


def test_model_view_is_the_preprocessed_input_back_in_rgb():
    image = np.random.default_rng(2).integers(0, 256, (160, 320, 3), dtype=np.uint8)
    view = model_view(image, (60, 25))
    assert view.shape == (66, 200, 3) and view.dtype == np.uint8
    expected = preprocess(view, crop=(0, 0))  # preprocessing the view again gives back the model input
    assert np.abs(expected - preprocess(image, (60, 25))).max() < 0.02


def test_preview_writes_a_png_atomically(log, tmp_path):
    out = tmp_path / "sub" / "grid.png"
    assert preview(log, out, n=4, seed=0) == str(out)
    png = read_frame(out)
    assert png.shape[0] > 150 and png.shape[1] > 300
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]
    with pytest.raises(ValueError, match="leaves"):
        preview(log, tmp_path / "bad.png", n=2, crop=(60, 25))  # 80-row frames
    assert not (tmp_path / "bad.png").exists()


def run_cli(argv, capsys):
    from e2e_drive.cli import main

    code = main(argv)
    return code, capsys.readouterr()


def test_cli_preview_on_the_real_log(udacity_sim_a, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code, captured = run_cli(["data", "preview", str(udacity_sim_a), "--out", str(out), "--n", "4", "--json"], capsys)
    assert code == 0, captured.err
    assert json.loads(captured.out) == {"out": str(out), "n": 4, "seed": 0, "rows": 613}
    assert read_frame(out).ndim == 3
    code, captured = run_cli(["data", "preview", str(udacity_sim_a), "--out", str(out), "--crop", "100,70"], capsys)
    assert code == 2 and "leaves" in captured.err


def test_cli_bench_pipeline_json(udacity_sim_a, capsys):
    code, captured = run_cli(["bench", "pipeline", str(udacity_sim_a), "--batches", "2", "--batch-size", "8",
                              "--repeats", "1", "--no-processes", "--no-model", "--json"], capsys)
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["rows"] == 613 and result["frames_cached"] == 613 * 3
    assert set(result["img_per_s"]) == {"naive", "ours_1_worker", "ours_threads"}
    assert all(v > 0 for v in result["img_per_s"].values())
    assert result["speedup_vs_naive"]["ours_1_worker"] == pytest.approx(
        result["img_per_s"]["ours_1_worker"] / result["img_per_s"]["naive"], rel=0.01)
    assert result["model_train_img_per_s"] is None and "n/a" in result["model_train_note"]
    # The baseline is the usual generator: it yields whole batches of frames and labels.
    from e2e_drive.bench.pipeline import naive_batches
    from data_tools import load_log

    frames, labels = next(naive_batches(load_log(udacity_sim_a), 4, np.random.default_rng(0)))
    assert frames.shape == (4, 160, 320, 3) and frames.dtype == np.uint8 and labels.shape == (4,)


def test_cli_help_has_examples(capsys):
    for argv in (["data", "preview", "--help"], ["bench", "pipeline", "--help"]):
        with pytest.raises(SystemExit):
            run_cli(argv, capsys)
        assert "example" in capsys.readouterr().out
