"""Shared test fixtures: the real logs in ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _share_the_cores_between_workers() -> None:
    """Each xdist worker gets its share of the cores for TensorFlow's and OpenMP's thread pools (set before
    TensorFlow loads; scripts the tests start inherit it). Without it, two workers on two cores each run
    pools of two and more threads that preempt each other, and timing-sensitive work waits longest."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    share = str(max(1, (os.cpu_count() or 1) // workers))
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, share)


_share_the_cores_between_workers()

from e2e_drive.heap_padding import pad_the_heap  # noqa: E402  (light: no TensorFlow)

pad_the_heap()  # what train() does for its runs, also for the tests that fit models themselves: speed, not results

import pytest


def pytest_configure(config):
    # The default run hides GPUs (CI has none; results must not depend on one); `pytest -m gpu` sees them.
    if "gpu" not in (config.option.markexpr or ""):
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True, scope="session")
def one_pass_epochs():
    """Tests train on logs of tens of rows: an epoch is one pass over them (``--epoch-samples 0``), not the
    recipe's ``MIN_EPOCH_SAMPLES``, which would repeat each row hundreds of times. Tests of that rule pass
    ``epoch_samples`` themselves; scripts run in other processes pass ``epoch_samples=0``."""
    import e2e_drive.recipe

    # Session scope: module-scoped fixtures that train (e.g. test_throttle's) are set up under it too.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(e2e_drive.recipe, "MIN_EPOCH_SAMPLES", 0)
        yield


@pytest.fixture
def rng(request):
    """A NumPy generator seeded by the test's own id: its data depends on neither test order nor xdist worker."""
    import zlib

    import numpy as np

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("E2E_DRIVE_SHARED", REPO.parent / "shared")) / "data"


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real sample {name!r} not found at {path} (../shared/data is absent on this machine)")
    return path


@pytest.fixture(scope="session")
def udacity_sim_a() -> Path:
    """The real Udacity-simulator log (613 rows x 3 cameras, absolute Windows paths)."""
    return _shared("udacity_sim_a")


@pytest.fixture(scope="session")
def donkey_tub_real() -> Path:
    """A tub v2 recorded on a physical RC car (5,015 records, 160x120, about 20 Hz)."""
    return _shared("donkey_tub_real")


@pytest.fixture(scope="session")
def donkey_tub_a() -> Path:
    """The real donkeycar tub v2 (250 records in 3 catalogs, 25 deleted)."""
    return _shared("donkey_tub_a")


# Builders shared by several test modules, as fixtures (each returns the builder function; the plain
# functions live in tests/builders.py so that scripts run in a subprocess can import them too).
@pytest.fixture(scope="session")
def tiny_model():
    """``tiny_model(activation="all", conv="keras", frame=(40, 80, 3), seed=0)``: a small every-layer net."""
    from tests.builders import tiny_model as build

    return build


@pytest.fixture(scope="session")
def synthetic_log():
    """``synthetic_log(folder, n=48, seed=0, recordings=1)``: a learnable 40x80 3-camera DrivingLog."""
    from tests.builders import synthetic_log as build

    return build


@pytest.fixture(scope="session")
def udacity_log():
    """``udacity_log(folder, rows=None, n=4, header=False, path_style="relative")``: a tiny Udacity folder."""
    from tests.builders import make_udacity_log as build

    return build


@pytest.fixture(scope="session")
def tub():
    """``tub(folder, records=6, per_catalog=4, deleted=(1,), extra_lines=None)``: a tiny donkeycar tub v2."""
    from tests.builders import make_tub as build

    return build
