"""DrivingDataset and FrameCache: batches, determinism across workers, caches, tf.data, errors."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools.augment import HorizontalFlip, default_augmentation
from data_tools.dataset import DrivingDataset
from data_tools.errors import DataError
from data_tools.frame_cache import FrameCache
from data_tools.frames import read_frame, write_frame
from data_tools.log import DrivingLog

H, W = 24, 40


def make_log(folder, n=22, *, sizes=None, cameras=("center", "left", "right")) -> DrivingLog:
    """A log of PNG frames (lossless, so decoded frames are known exactly); pixel values encode row and camera."""
    rng = np.random.default_rng(123)
    columns = {c: [] for c in cameras}
    for i in range(n):
        for k, camera in enumerate(cameras):
            shape = sizes.get((i, camera), (H, W)) if sizes else (H, W)
            frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
            frame[0, 0] = (i, k, 7)
            path = folder / f"{camera}_{i:03d}.png"
            write_frame(path, frame)
            columns[camera].append(str(path))
    steering = np.linspace(-0.5, 0.5, n)
    return DrivingLog.from_columns(
        center=columns["center"], left=columns.get("left"), right=columns.get("right"),
        steering=steering, source=str(folder / "driving_log.csv"), row=np.arange(1, n + 1),
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    return make_log(tmp_path_factory.mktemp("frames"))


def all_batches(ds, epoch):
    return [ds.batch(epoch, i) for i in range(len(ds))]


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for (fa, sa), (fb, sb) in zip(batches_a, batches_b):
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(sa, sb)


def test_batches_are_the_log_frames_unaugmented(log):
    ds = DrivingDataset(log, batch_size=8, shuffle=False, progress=False)
    assert len(ds) == 3 and ds.frame_shape == (H, W, 3)
    frames, steering = ds[2]
    assert frames.dtype == np.uint8 and frames.shape == (6, H, W, 3)
    assert steering.dtype == np.float32 and steering.shape == (6,)
    for k, row in enumerate(range(16, 22)):
        np.testing.assert_array_equal(frames[k], read_frame(log.images["center"][row]))
    np.testing.assert_allclose(steering, log.steering[16:22])
    assert len(DrivingDataset(log, batch_size=8, drop_remainder=True, progress=False)) == 2


def test_shuffle_covers_every_row_once_and_changes_per_epoch(log):
    ds = DrivingDataset(log, batch_size=5, seed=3, progress=False)
    seen = []
    for epoch in (0, 1):
        tags = np.concatenate([frames[:, 0, 0, 0] for frames, _ in all_batches(ds, epoch)])
        assert sorted(tags.tolist()) == list(range(len(log)))
        seen.append(tags)
    assert not np.array_equal(seen[0], seen[1])
    ds.on_epoch_end()
    assert_same([ds[i] for i in range(len(ds))], all_batches(ds, 1))


def test_repeat_serves_every_row_that_many_times_freshly_augmented(log):
    once = DrivingDataset(log, batch_size=5, seed=3, progress=False)
    thrice = DrivingDataset(log, batch_size=5, seed=3, repeat=3, progress=False)
    assert len(thrice) == -(-3 * len(log) // 5) and thrice.rows_per_epoch == 3 * len(log)
    tags = np.concatenate([frames[:, 0, 0, 0] for frames, _ in all_batches(thrice, 0)])
    assert np.bincount(tags, minlength=len(log)).tolist() == [3] * len(log)
    # Each serving of a row draws its own augmentation: the three labels of a row are not all the same.
    augmented = DrivingDataset(log, batch_size=5, seed=3, repeat=3, augment=default_augmentation(), progress=False)
    labels = np.concatenate([steering for _, steering in all_batches(augmented, 0)])
    rows = augmented.order(0)
    assert sum(len({round(float(v), 6) for v in labels[rows == r]}) > 1 for r in range(len(log))) > len(log) // 2
    # repeat=1 keeps the order every earlier run trained with.
    np.testing.assert_array_equal(once.order(4), np.random.default_rng([3, 4, 0]).permutation(len(log)))
    with pytest.raises(ValueError, match="repeat"):
        DrivingDataset(log, 5, repeat=0, progress=False)


def test_same_seed_same_batches_other_seed_differs(log):
    aug = default_augmentation()
    a = DrivingDataset(log, 6, augment=aug, seed=5, progress=False)
    b = DrivingDataset(log, 6, augment=default_augmentation(), seed=5, progress=False)
    c = DrivingDataset(log, 6, augment=aug, seed=6, progress=False)
    assert_same(all_batches(a, 0), all_batches(b, 0))
    assert not np.array_equal(a[0][0], c[0][0])


def test_augmented_labels_follow_the_camera_choice(log):
    # Only camera choice and flips: each label must be +-(row label + camera offset), recognisable from the pixel tag.
    from data_tools.augment import ChooseCamera, Compose

    aug = Compose([ChooseCamera(correction=0.2), HorizontalFlip(p=0.5)])
    ds = DrivingDataset(log, 22, augment=aug, progress=False)
    frames, steering = ds[0]
    offsets = {0: 0.0, 1: 0.2, 2: -0.2}
    for frame, label in zip(frames, steering):
        flipped = tuple(frame[0, -1]) in {(r, k, 7) for r in range(22) for k in range(3)}
        tag = frame[0, -1] if flipped else frame[0, 0]
        row, camera = int(tag[0]), int(tag[1])
        expected = log.steering[row] + offsets[camera]
        assert label == pytest.approx(-expected if flipped else expected, abs=1e-6)


def keras_epochs(ds, epochs):
    """Batches as model.fit receives them: through Keras' own PyDataset adapter (threads/processes)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(ds, shuffle=False)
    out = []
    for _ in range(epochs):
        adapter.on_epoch_begin()
        out.append([(np.asarray(x), np.asarray(y)) for x, y in adapter.get_numpy_iterator()])
        adapter.on_epoch_end()
    return out


@pytest.mark.parametrize("workers,multiprocessing", [(2, False), (2, True)])
def test_workers_threads_and_processes_give_identical_batches(log, workers, multiprocessing):
    reference = DrivingDataset(log, 8, augment=default_augmentation(), seed=1, progress=False)
    expected = [all_batches(reference, e) for e in (0, 1)]
    ds = DrivingDataset(log, 8, augment=default_augmentation(), seed=1, workers=workers,
                        use_multiprocessing=multiprocessing, progress=False)
    got = keras_epochs(ds, 2)
    # The second epoch must differ from the first and still match: the epoch reached the workers.
    assert not np.array_equal(expected[0][0][0], expected[1][0][0])
    for e in (0, 1):
        assert_same(got[e], expected[e])
    # Worker processes hand every batch back through shared memory, not through the pipe.
    from_shared_memory = [np.shares_memory(f, ds._shared_slots._flat) for f, _ in got[0] + got[1]] \
        if multiprocessing else [False]
    assert all(from_shared_memory) == multiprocessing


def test_to_tf_dataset_gives_the_same_batches(log):
    ds = DrivingDataset(log, 8, augment=default_augmentation(), seed=2, progress=False)
    tf_batches = [(f.numpy(), s.numpy()) for f, s in ds.to_tf_dataset(epochs=2)]
    assert_same(tf_batches, all_batches(ds, 0) + all_batches(ds, 1))


@pytest.mark.parametrize("worker_processes", [False, True])
def test_model_fit_consumes_the_dataset(log, worker_processes):
    import keras

    ds = DrivingDataset(log, 8, augment=default_augmentation(), progress=False,
                        workers=2 if worker_processes else 1, use_multiprocessing=worker_processes)
    model = keras.Sequential([keras.Input((H, W, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(ds, epochs=2, verbose=0)
    # Keras calls on_epoch_end once when fit starts (EpochIterator.reset) and after each epoch.
    assert len(history.history["loss"]) == 2 and ds.epoch == 3


def test_caches_agree_and_disk_cache_is_reused(log, tmp_path):
    memory = DrivingDataset(log, 7, augment=default_augmentation(), progress=False)
    disk = DrivingDataset(log, 7, augment=default_augmentation(), cache="disk", cache_dir=tmp_path, progress=False)
    none = DrivingDataset(log, 7, augment=default_augmentation(), cache=None)
    assert_same(all_batches(memory, 0), all_batches(disk, 0))
    assert_same(all_batches(memory, 0), all_batches(none, 0))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".u8")
    path = disk.cache.path
    mtime = (tmp_path / files[1]).stat().st_mtime_ns
    again = FrameCache(log, disk.cameras, mode="disk", cache_dir=tmp_path, progress=False)
    assert again.path == path and (tmp_path / files[1]).stat().st_mtime_ns == mtime
    import pickle

    restored = pickle.loads(pickle.dumps(again))
    assert isinstance(restored.frames, np.memmap)
    np.testing.assert_array_equal(restored.get("left", 3), read_frame(log.images["left"][3]))


def test_frames_of_different_sizes_name_the_file_and_sizes(tmp_path):
    log = make_log(tmp_path, n=4, sizes={(2, "center"): (20, 40)}, cameras=("center",))
    with pytest.raises(DataError, match=r"row 3.*center_002\.png is 40x20 .* 40x24"):
        DrivingDataset(log, 2, progress=False)
    lazy = DrivingDataset(log, 2, shuffle=False, cache=None)
    with pytest.raises(DataError, match=r"row 3.*40x20"):
        lazy[1]


def test_an_odd_first_frame_is_blamed_not_the_rows_after_it(tmp_path):
    """The most common size is the log's: when row 1 is the odd one, the error names row 1 (and a good row)."""
    log = make_log(tmp_path, n=5, sizes={(0, "center"): (20, 20), (3, "center"): (30, 40)}, cameras=("center",))
    with pytest.raises(DataError) as error:
        DrivingDataset(log, 2, progress=False)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'driving_log.csv'}, row 1 (center camera): frame ")
    assert "center_000.png is 20x20 but 3 other frame(s) of the log are 40x24 (e.g. " in message
    assert "row 2 (center camera)" in message and "center_001.png" in message
    assert "1 more frame(s) of another size: " in message and "row 4 (center camera) is 40x30" in message
    assert message.endswith("all frames of a log must have one size")
    # Two frames, two sizes: both rows are named.
    (tmp_path / "pair").mkdir()
    pair = make_log(tmp_path / "pair", n=2, sizes={(1, "center"): (16, 32)}, cameras=("center",))
    with pytest.raises(DataError, match=r"row 2 .*center_001\.png is 32x16 but 1 other frame\(s\) of the log are "
                                        r"40x24 \(e\.g\. .*row 1 "):
        FrameCache(pair, progress=False)


def test_missing_or_corrupt_frame_names_the_row(tmp_path):
    log = make_log(tmp_path, n=3, cameras=("center",))
    (tmp_path / "center_001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"driving_log\.csv, row 2.*not a decodable image"):
        FrameCache(log, progress=False)


def test_bad_arguments(log):
    with pytest.raises(ValueError, match="cache"):
        DrivingDataset(log, cache="ssd")
    with pytest.raises(ValueError, match="batch_size"):
        DrivingDataset(log, batch_size=0)
    with pytest.raises(ValueError, match="cache_dir"):
        FrameCache(log, mode="disk")
    with pytest.raises(IndexError):
        DrivingDataset(log, 8, progress=False)[3]


def test_real_udacity_log(udacity_sim_a):
    from data_tools import load_log

    log = load_log([str(udacity_sim_a)])[:40]
    ds = DrivingDataset(log, 16, augment=default_augmentation(), progress=False)
    frames, steering = ds[0]
    assert frames.shape == (16, 160, 320, 3) and frames.dtype == np.uint8 and np.all(np.abs(steering) <= 1)
    assert ds.frame_shape == (160, 320, 3) and len(ds.cache) == 120
    plain = DrivingDataset(log, 16, progress=False)  # no augmentation: the decoded JPEGs, in the epoch's order
    first, _ = plain[0]
    for k, row in enumerate(plain.order(0)[:16]):
        np.testing.assert_array_equal(first[k], read_frame(log.images["center"][row]))


def test_cache_auto_picks_memory_or_disk_by_the_budget(log, tmp_path, caplog):
    import logging

    from data_tools.frame_cache import choose_cache_mode, decoded_bytes

    caplog.set_level(logging.INFO, logger="data_tools.dataset")
    needed = decoded_bytes(log, ("center",))
    assert needed == len(log) * H * W * 3  # distinct files x the frame size, independent of the cache
    roomy = DrivingDataset(log, 8, cache="auto", cache_dir=tmp_path, memory_budget=needed + 1, progress=False)
    tight = DrivingDataset(log, 8, cache="auto", cache_dir=tmp_path, memory_budget=needed, progress=False)
    assert roomy.cache_mode == "memory" and not isinstance(roomy.cache.frames, np.memmap)
    assert tight.cache_mode == "disk" and isinstance(tight.cache.frames, np.memmap)
    assert tight.cache.path.startswith(str(tmp_path))
    assert f"frame cache: disk under {tmp_path}" in caplog.text and "exceed" in caplog.text
    assert_same(all_batches(roomy, 0), all_batches(tight, 0))
    # Without a budget: half of what /proc/meminfo says is available; these few KB fit.
    mode, why = choose_cache_mode(log, ("center",))
    assert mode == "memory" and "50% of" in why and "available" in why
    none = DrivingDataset(log, 8, cache="none")
    assert none.cache is None and none.cache_mode == "none"
    assert_same(all_batches(none, 0), all_batches(roomy, 0))


def test_frame_cache_imports_no_e2e_drive():
    import subprocess
    import sys

    code = "import sys, data_tools.frame_cache; print(any(m.startswith('e2e_drive') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def test_a_cache_dir_that_is_a_file_is_named(tmp_path):
    from tests.builders import synthetic_log

    log = synthetic_log(tmp_path / "frames", n=4)
    (tmp_path / "taken").write_text("a file where the cache folder should go")
    with pytest.raises(NotADirectoryError, match="--cache-dir is a file, not a folder") as raised:
        FrameCache(log, mode="disk", cache_dir=tmp_path / "taken", progress=False)
    assert raised.value.filename == str(tmp_path / "taken")
    assert (tmp_path / "taken").read_text() == "a file where the cache folder should go"
