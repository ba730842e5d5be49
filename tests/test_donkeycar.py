"""donkeycar's own code runs our exported pilot and reads our simulator's tub (donkeycar 5.3.0, installed at test
time without its dependencies into .pytest_cache/, run in a subprocess with TensorFlow from our venv)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.builders import tiny_model

REPO = Path(__file__).resolve().parents[1]
DONKEYCAR = "donkeycar==5.3.0"
# What `import donkeycar` (pyfiglet in donkeycar/__init__.py) and its vehicle/utilities modules need beyond our venv.
PURE_PYTHON_DEPS = ("pyfiglet", "prettytable")
SITE = REPO / ".pytest_cache" / "donkeycar-5.3.0"  # git ignores .pytest_cache: CI installs once


@pytest.fixture(scope="module")
def donkeycar_site() -> Path:
    """A folder holding donkeycar 5.3.0 and the few pure-Python packages its import needs (cached)."""
    if (SITE / "donkeycar" / "__init__.py").is_file() and (SITE / ".complete").is_file():
        return SITE
    staging = SITE.with_name(SITE.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                                 str(staging), DONKEYCAR, *PURE_PYTHON_DEPS],
                                capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.skip(f"installing {DONKEYCAR} timed out (offline?)")
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        pytest.skip(f"cannot install {DONKEYCAR} (offline?): {last}")
    (staging / ".complete").write_text(DONKEYCAR + "\n")
    shutil.rmtree(SITE, ignore_errors=True)
    os.replace(staging, SITE)
    return SITE


def _run_donkeycar(site: Path, script: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300,
                            env=env, cwd=site)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


PILOT_SCRIPT = """
import json, sys
import numpy as np
from donkeycar.parts.interpreter import TfLite
from donkeycar.parts.keras import KerasLinear

pilot = KerasLinear(interpreter=TfLite(), input_shape=(120, 160, 3))
pilot.load(sys.argv[1])
frames = np.load(sys.argv[2])
print(json.dumps({"keys": [pilot.interpreter.input_keys, pilot.interpreter.output_keys],
                  "shape": [int(d) for d in pilot.get_input_shape("img_in")],
                  "out": [[float(v) for v in pilot.run(frame)] for frame in frames]}))
"""


def _two_head_model():
    import keras

    base = tiny_model("elu", frame=(120, 160, 3))
    throttle = keras.layers.Dense(1, name="throttle")(base.layers[-2].output)
    return keras.Model(base.inputs, {"steering": base.outputs[0], "throttle": throttle})


@pytest.mark.parametrize("heads", ["steering", "steering+throttle"])
def test_donkeycar_runs_our_pilot(heads, donkeycar_site, tmp_path):
    from deploy import export, load_predictor

    model = tiny_model("elu", frame=(120, 160, 3)) if heads == "steering" else _two_head_model()
    model.save(tmp_path / "m.keras")
    report = export(tmp_path / "m.keras", "donkeycar", tmp_path / "pilot.tflite", parity_frames=4, throttle=0.25)
    assert report.passed, report.summary()
    frames = np.random.default_rng(1).integers(0, 256, (4, 120, 160, 3), dtype=np.uint8)
    np.save(tmp_path / "frames.npy", frames)
    result = json.loads(_run_donkeycar(donkeycar_site, PILOT_SCRIPT, str(tmp_path / "pilot.tflite"),
                                       str(tmp_path / "frames.npy")))
    assert result["keys"] == [["img_in"], ["n_outputs0", "n_outputs1"]]
    assert result["shape"] == [1, 120, 160, 3]
    angle, throttle = np.array(result["out"]).T
    expected = model.predict(frames, verbose=0)
    if heads == "steering":
        np.testing.assert_allclose(angle, expected.reshape(-1), atol=1e-4)
        np.testing.assert_allclose(throttle, 0.25, atol=1e-7)
    else:
        np.testing.assert_allclose(angle, expected["steering"].reshape(-1), atol=1e-4)
        np.testing.assert_allclose(throttle, expected["throttle"].reshape(-1), atol=1e-4)
    # Our own loader reads the pilot too (frames / 255 like donkeycar) and names its outputs.
    ours = load_predictor(tmp_path / "pilot.tflite").predict_outputs(frames)
    np.testing.assert_allclose(ours["steering"], angle, atol=1e-5)
    np.testing.assert_allclose(ours["throttle"], throttle, atol=1e-5)


TUB_SCRIPT = """
import json, sys
import numpy as np
from PIL import Image
from donkeycar.parts.tub_v2 import Tub

tub = Tub(sys.argv[1], read_only=True)
records = list(tub)
images = [np.asarray(Image.open(f"{sys.argv[1]}/images/{r['cam/image_array']}")).shape for r in records]
tub.close()
# donkeycar's own writer, same inputs and values, for the layout comparison.
writer = Tub(sys.argv[2], inputs=["cam/image_array", "user/angle", "user/throttle", "user/mode"],
             types=["image_array", "float", "float", "str"])
for r in records:
    frame = np.asarray(Image.open(f"{sys.argv[1]}/images/{r['cam/image_array']}"))
    writer.write_record({"cam/image_array": frame, "user/angle": r["user/angle"],
                         "user/throttle": r["user/throttle"], "user/mode": r["user/mode"]})
writer.close()
print(json.dumps({"len": len(tub), "records": records, "images": images}))
"""


def test_donkeycar_reads_our_simulator_tub(donkeycar_site, tmp_path):
    from data_tools import read_tub
    from e2e_drive.sim import make_track, record
    from e2e_drive.sim.record import RECORDING_FILE

    out = tmp_path / "tub"
    result = record(make_track(4), out, laps=0.05, seed=1, progress=False, format="tub")
    assert result.csv_path is None and result.rows > 5
    theirs = tmp_path / "theirs"
    payload = json.loads(_run_donkeycar(donkeycar_site, TUB_SCRIPT, str(out), str(theirs)))
    assert payload["len"] == result.rows == len(payload["records"])
    assert all(shape == [160, 320, 3] for shape in payload["images"])
    records = payload["records"]
    assert [r["_index"] for r in records] == list(range(result.rows))
    assert {r["user/mode"] for r in records} == {"user"} and {r["user/throttle"] for r in records} == {0.3}
    # Our reader reads the same tub to the same labels.
    log = read_tub([str(out)])
    np.testing.assert_allclose(log.steering, [r["user/angle"] for r in records], atol=1e-6)
    assert [Path(p).name for p in log.images["center"]] == [r["cam/image_array"] for r in records]
    # Layout: file for file what donkeycar's own Tub wrote for the same records (timestamps aside), plus our
    # recording.json (which donkeycar's reader above ignored).
    assert sorted(p.name for p in out.iterdir() if p.name != RECORDING_FILE) == \
        sorted(p.name for p in theirs.iterdir())
    assert (out / RECORDING_FILE).is_file()
    assert sorted(os.listdir(out / "images")) == sorted(os.listdir(theirs / "images"))
    ours_manifest = (out / "manifest.json").read_text().splitlines()
    their_manifest = (theirs / "manifest.json").read_text().splitlines()
    assert len(ours_manifest) == len(their_manifest) == 5
    for number in (0, 1, 2, 4):
        assert json.loads(ours_manifest[number]) == json.loads(their_manifest[number])
    assert json.loads(ours_manifest[3]).keys() == json.loads(their_manifest[3]).keys()

    def catalog(folder):
        lines = [json.loads(line) for line in (folder / "catalog_0.catalog").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("_timestamp_ms", "_session_id")} for r in lines]

    assert catalog(out) == catalog(theirs)
    ours_meta = json.loads((out / "catalog_0.catalog_manifest").read_text())
    their_meta = json.loads((theirs / "catalog_0.catalog_manifest").read_text())
    assert ours_meta.keys() == their_meta.keys() and ours_meta["path"] == their_meta["path"]
    assert ours_meta["line_lengths"] == their_meta["line_lengths"]


TUB_V1_SCRIPT = """
import json, sys
import numpy as np
from PIL import Image
from donkeycar.parts.datastore import Tub  # donkeycar's own tub v1 writer (kept in 5.x as the archived datastore)

source, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
records = [json.loads(line) for line in open(source + "/catalog_0.catalog")][:count]
tub = Tub(out, inputs=["cam/image_array", "user/angle", "user/throttle", "user/mode"],
          types=["image_array", "float", "float", "str"])
for record in records:
    frame = np.asarray(Image.open(source + "/images/" + record["cam/image_array"]))
    tub.put_record({"cam/image_array": frame, "user/angle": record["user/angle"],
                    "user/throttle": record["user/throttle"], "user/mode": "user"})
tub.exclude_index(3)
tub.write_exclude()
print(json.dumps({"indexes": sorted(tub.get_index(shuffled=False))}))
"""


def test_a_tub_v1_written_by_donkeycar_reads_like_the_tub_it_came_from(donkeycar_site, donkey_tub_real, tmp_path):
    """donkeycar's v1 writer (meta.json, record_N.json, N_cam-image_array_.jpg, exclude.json) fed with a real
    tub's first frames: every record but the excluded one, with its labels, frames and a rising clock."""
    from data_tools import read_log
    from data_tools.frames import read_frame

    out = tmp_path / "tub_v1"
    payload = json.loads(_run_donkeycar(donkeycar_site, TUB_V1_SCRIPT, str(donkey_tub_real), str(out), "12"))
    assert (out / "meta.json").is_file() and (out / "record_1.json").is_file()
    log = read_log(out)
    original = read_log(donkey_tub_real)[:12]
    assert payload["indexes"] == list(range(1, 13))  # the v1 writer numbers records from 1
    assert list(log.row) == [i for i in range(1, 13) if i != 3] and log.deleted == 1
    kept = np.array([i - 1 for i in log.row])
    np.testing.assert_allclose(log.steering, original.steering[kept], atol=1e-6)
    np.testing.assert_allclose(log.throttle, original.throttle[kept], atol=1e-6)
    assert np.all(np.diff(log.timestamp) >= 0) and np.isfinite(log.timestamp).all()
    assert read_frame(log.images["center"][0]).shape == read_frame(original.images["center"][0]).shape
    assert log.describe(0).endswith("record_1.json, record 1")
