"""Every .keras file the project writes loads the Keras way, in a fresh interpreter, with identical outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

LOAD = """
import sys
import numpy as np
{imports}
import keras
model = keras.saving.load_model(sys.argv[1])
frames = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(model.predict(frames, verbose=0)))
"""


def _load_in_fresh_interpreter(path, frames, tmp_path, imports: str) -> np.ndarray:
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "out.npy"
    result = subprocess.run(
        [sys.executable, "-c", LOAD.format(imports=imports), str(path), str(tmp_path / "frames.npy"), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return np.load(out)


@pytest.mark.parametrize("activation,conv", [("elu", "keras"), ("prelu", "reference"), ("maxout", "keras"),
                                             ("rrelu", "keras"), ("apl", "reference")])
def test_pilotnet_loads_with_keras_after_import_e2e_drive(activation, conv, tmp_path):
    from e2e_drive.models import pilotnet

    model = pilotnet((40, 80, 3), activation=activation, conv=conv, crop=(4, 4), seed=3)
    path = tmp_path / "m.keras"
    model.save(path)
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 80, 3), dtype=np.uint8)
    expected = model.predict(frames, verbose=0)
    loaded = _load_in_fresh_interpreter(path, frames, tmp_path, "import e2e_drive")
    np.testing.assert_array_equal(loaded, expected)


def test_a_bare_keras_import_names_the_package_to_import(tmp_path):
    # Keras resolves classes by module only for its own packages: without `import e2e_drive` the file
    # cannot load, and the error names the missing class (documented in the README).
    from e2e_drive.models import pilotnet

    path = tmp_path / "m.keras"
    pilotnet((40, 80, 3), crop=(4, 4)).save(path)
    script = "import sys, keras\nkeras.saving.load_model(sys.argv[1])"
    result = subprocess.run([sys.executable, "-c", script, str(path)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode != 0 and "FramePreprocess" in result.stderr


def test_layer_registered_names_are_unchanged():
    # Files written by earlier versions refer to these names: renaming them would orphan every saved model.
    import keras

    import e2e_drive  # noqa: F401
    from custom_layers import APL, ELU, Maxout, PReLU, ReferenceConv2D, RReLU
    from data_tools.frame_preprocess import FramePreprocess

    assert keras.saving.get_registered_name(FramePreprocess) == "data_tools>FramePreprocess"
    for layer in (APL, ELU, Maxout, PReLU, ReferenceConv2D, RReLU):
        assert keras.saving.get_registered_name(layer) == f"custom_layers>{layer.__name__}"
