"""deploy.load_predictor: one callable per artifact kind, equal to Keras, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from deploy import export, load_predictor
from tests.builders import FRAME, tiny_model


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    model = tiny_model("all", "keras")
    model.save(root / "m.keras")
    for fmt, name in (("onnx", "m.onnx"), ("tflite", "m.tflite"), ("saved_model", "m_saved")):
        export(root / "m.keras", fmt, root / name, parity_frames=2)
    return root, model


@pytest.mark.parametrize("name,runtime", [("m.keras", "keras"), ("m.onnx", "onnxruntime"), ("m.tflite", "litert"),
                                          ("m_saved", "tensorflow")])
def test_every_runtime_matches_keras_for_any_batch_size(artifacts, name, runtime):
    root, model = artifacts
    predictor = load_predictor(root / name)
    assert predictor.runtime == runtime and predictor.input_shape == FRAME
    rng = np.random.default_rng(5)
    for batch in (1, 4, 2):  # a changing batch: the TFLite interpreter must resize each time
        frames = rng.integers(0, 256, size=(batch, *FRAME), dtype=np.uint8)
        steering = predictor(frames)
        assert steering.dtype == np.float32 and steering.shape == (batch,)
        np.testing.assert_allclose(steering, model.predict(frames, verbose=0).reshape(-1), atol=1e-4)
    single = rng.integers(0, 256, size=FRAME, dtype=np.uint8)  # one (H, W, 3) frame counts as a batch of one
    np.testing.assert_allclose(predictor(single), model.predict(single[None], verbose=0).reshape(-1), atol=1e-4)


def test_bad_artifacts_and_inputs_fail_with_one_clear_line(artifacts, tmp_path):
    root, _ = artifacts
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        load_predictor(tmp_path / "nothing.onnx")
    (tmp_path / "weights.pt").write_bytes(b"\x00" * 8)
    with pytest.raises(ValueError, match=r"weights.pt: unknown model suffix '.pt'.*\.onnx"):
        load_predictor(tmp_path / "weights.pt")
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.tflite: file is empty"):
        load_predictor(tmp_path / "empty.tflite")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="junk.onnx: cannot load the ONNX model"):
        load_predictor(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match="not a SavedModel"):
        load_predictor(tmp_path)
    predictor = load_predictor(root / "m.onnx")
    with pytest.raises(ValueError, match=r"expected frames of shape \(B, 40, 80, 3\).*\(1, 80, 40, 3\)"):
        predictor(np.zeros((1, 80, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="expected uint8 RGB frames.*float32"):
        predictor(np.zeros((1, *FRAME), np.float32))
