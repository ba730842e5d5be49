"""PilotNet: architecture, every activation/conv variant fits and round-trips through .keras."""

from __future__ import annotations

import numpy as np
import pytest

from e2e_drive.models import ACTIVATIONS, pilotnet

TINY = (40, 80, 3)
CROP = (4, 4)


def _frames(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *TINY)).astype(np.uint8)


def test_pilotnet_architecture_matches_the_paper():
    import keras

    model = pilotnet((160, 320, 3))
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(l.filters, l.kernel_size, l.strides) for l in convs] == [
        (24, (5, 5), (2, 2)), (36, (5, 5), (2, 2)), (48, (5, 5), (2, 2)), (64, (3, 3), (1, 1)), (64, (3, 3), (1, 1))]
    assert model.get_layer("preprocess").output.shape[1:] == (66, 200, 3)
    assert model.get_layer("flatten").output.shape[-1] == 1 * 18 * 64  # as in the paper's 1152 neurons
    assert [model.get_layer(f"dense{i}").units for i in (1, 2, 3)] == [100, 50, 10]
    # 27 conv kernels x ... : the NVIDIA paper's ~250k parameters (exact count of this layout).
    expected = sum((k * k * cin + 1) * cout for k, cin, cout in ((5, 3, 24), (5, 24, 36), (5, 36, 48), (3, 48, 64),
                                                                 (3, 64, 64)))
    expected += (1152 + 1) * 100 + (100 + 1) * 50 + (50 + 1) * 10 + 11
    assert model.count_params() == expected == 252219
    assert model.get_layer("preprocess").crop == (60, 25)  # default_crop(160)


def test_model_preprocessing_equals_the_numpy_definition():
    from data_tools.preprocess import preprocess

    model = pilotnet(TINY, crop=CROP, seed=0)
    frames = _frames(2)
    import keras

    inside = keras.Model(model.inputs[0], model.get_layer("preprocess").output)(frames)
    np.testing.assert_allclose(np.asarray(inside), preprocess(frames, CROP), atol=2e-2)


@pytest.mark.parametrize("activation,conv", [(a, "keras") for a in ACTIVATIONS] + [("elu", "reference")])
def test_every_variant_fits_and_round_trips(activation, conv, tmp_path):
    import keras

    import custom_layers

    model = pilotnet(TINY, activation=activation, conv=conv, crop=CROP, seed=1, dropout=0.1)
    kinds = {type(l).__name__ for l in model.layers}
    expected_kind = {"elu": "ELU", "relu": "ReLU", "prelu": "PReLU", "maxout": "Maxout", "rrelu": "RReLU",
                     "apl": "APL"}[activation]
    assert expected_kind in kinds
    if conv == "reference":
        assert "Conv2D" not in kinds and sum(isinstance(l, custom_layers.ReferenceConv2D) for l in model.layers) == 5
    frames, steering = _frames(8), np.linspace(-0.5, 0.5, 8).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(frames, steering, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(frames, verbose=0), model.predict(frames, verbose=0), rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("preprocess").crop == CROP


def test_maxout_doubles_units_then_pools():
    model = pilotnet(TINY, activation="maxout", crop=CROP)
    assert model.get_layer("conv1").filters == 48
    assert model.get_layer("conv1_maxout").output.shape[-1] == 24
    assert model.get_layer("dense1").units == 200 and model.get_layer("dense1_maxout").output.shape[-1] == 100


def test_same_seed_same_weights():
    a, b = pilotnet(TINY, crop=CROP, seed=7), pilotnet(TINY, crop=CROP, seed=7)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_mixed_precision_output_stays_float32():
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = pilotnet(TINY, crop=CROP)
        assert model.get_layer("conv1").compute_dtype == "bfloat16"
        assert model.get_layer("steering").compute_dtype == "float32"
        assert model(_frames(2)).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown activation 'tanh'; expected one of: elu, relu, prelu, maxout"):
        pilotnet(TINY, activation="tanh")
    with pytest.raises(ValueError, match="Unknown conv 'fast'"):
        pilotnet(TINY, conv="fast")
    with pytest.raises(ValueError, match="leaves 0 rows of a 40-row frame"):
        pilotnet(TINY, crop=(30, 10))
    with pytest.raises(ValueError, match=r"input_shape=\(H, W, 3\)"):
        pilotnet((40, 80))


def test_load_model_errors_name_the_file(tmp_path):
    from e2e_drive.models import load_model

    with pytest.raises(FileNotFoundError, match="missing.keras: model file does not exist"):
        load_model(str(tmp_path / "missing.keras"))
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="broken.keras: cannot load the Keras model: not a zip archive"):
        load_model(str(broken))
    with pytest.raises(ValueError, match="expected a .keras model file"):
        other = tmp_path / "m.onnx"
        other.write_bytes(b"x")
        load_model(str(other))
    with pytest.raises(ValueError, match="is a folder, expected a .keras model file"):
        load_model(str(tmp_path))


def test_pilotnet_throttle_head_beside_steering_and_dict_targets_train():
    import keras

    one = pilotnet((66, 200, 3), seed=3)
    two = pilotnet((66, 200, 3), seed=3, outputs=("steering", "throttle"))
    assert not isinstance(one.output, dict) and one.output_names == ["steering"]  # single-output: as before
    assert list(two.output) == ["steering", "throttle"]
    frames = np.random.default_rng(0).integers(0, 256, (4, 66, 200, 3), dtype=np.uint8)
    both = two.predict(frames, verbose=0)
    assert both["throttle"].shape == (4, 1) and both["throttle"].dtype == np.float32
    # Same seed, same initializers in the same order: the steering head equals the one-head model's.
    np.testing.assert_allclose(both["steering"], one.predict(frames, verbose=0), atol=1e-6)
    two.compile(keras.optimizers.SGD(1e-3), loss={"steering": "mse", "throttle": "mse"})
    history = two.fit(frames, {"steering": np.zeros((4, 1)), "throttle": np.full((4, 1), 0.3)}, epochs=1, verbose=0)
    assert {"steering_loss", "throttle_loss"} <= set(history.history)
    with pytest.raises(ValueError, match="steering included"):
        pilotnet((66, 200, 3), outputs=("throttle",))
    with pytest.raises(ValueError, match="outputs from"):
        pilotnet((66, 200, 3), outputs=("steering", "brake"))


def test_steering_function_is_the_eager_model_and_follows_new_weights():
    """The traced predictor the closed loop drives with gives the eager call's steering for any batch size,
    also after the weights change (as they do between the epochs that ``--select-by autonomy`` scores)."""
    from e2e_drive.models import steering_function

    model = pilotnet((60, 120, 3), seed=0)
    steer = steering_function(model)
    frames = np.random.default_rng(3).integers(0, 256, (5, 60, 120, 3), dtype=np.uint8)
    for batch in (frames[:1], frames):
        expected = np.asarray(model(batch, training=False)).reshape(-1)
        np.testing.assert_allclose(steer(batch), expected, rtol=1e-5, atol=1e-6)
    before = steer(frames)
    bias = model.layers[-1].bias
    bias.assign(bias.numpy() + 0.25)
    np.testing.assert_allclose(steer(frames), before + 0.25, rtol=1e-5, atol=1e-5)
    assert steer(frames).dtype == np.float32 and steer(frames).shape == (5,)
