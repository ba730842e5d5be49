"""deploy.fold: the colour conversion folded into the first convolution gives the same steering, faster graphs."""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest

from custom_layers import reference
from data_tools.frame_preprocess import FramePreprocess
from data_tools.preprocess import RGB_TO_YUV
from deploy.export import export, export_onnx_proto
from deploy.fold import fold_preprocessing, folded_weights
from e2e_drive.models import pilotnet

FRAME = (40, 80, 3)
FRAMES = np.random.default_rng(5).integers(0, 256, (6, *FRAME), dtype=np.uint8)


def test_folded_weights_match_converting_then_convolving():
    """Oracle: OpenCV-convention YUV scaled to [-1, 1], then the float64 reference convolution."""
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (2, 9, 11, 3))
    kernel, bias = rng.normal(size=(5, 5, 3, 4)), rng.normal(size=4)
    yuv = rgb @ RGB_TO_YUV.T + np.array([0.0, 128.0, 128.0])
    expected = reference.conv2d(yuv / 127.5 - 1.0, kernel, bias, stride=2)
    folded_kernel, folded_bias = folded_weights(kernel, bias)
    np.testing.assert_allclose(reference.conv2d(rgb, folded_kernel, folded_bias, stride=2), expected, atol=1e-4)
    _, no_bias = folded_weights(kernel, None)  # the offset alone becomes the bias
    np.testing.assert_allclose(reference.conv2d(rgb, folded_kernel, no_bias, stride=2),
                               expected - bias, atol=1e-4)


@pytest.mark.parametrize("activation,conv", [("elu", "keras"), ("maxout", "reference"), ("prelu", "keras")])
def test_folded_pilotnet_steers_the_same_and_the_original_is_untouched(activation, conv):
    keras.utils.set_random_seed(0)
    model = pilotnet(FRAME, activation=activation, conv=conv)
    before = [w.copy() for w in model.get_weights()]
    folded, note = fold_preprocessing(model)
    assert note == "colour conversion and scaling folded into conv1"
    assert folded.get_layer("preprocess").colour is False
    expected = model.predict(FRAMES, verbose=0)
    assert np.ptp(expected) > 1e-4
    np.testing.assert_allclose(folded.predict(FRAMES, verbose=0), expected, atol=1e-5)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # A folded model round-trips through .keras (the layer's config carries colour=False).
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(folded))
    restored.set_weights(folded.get_weights())
    np.testing.assert_allclose(restored.predict(FRAMES, verbose=0), expected, atol=1e-5)


def test_folded_onnx_has_no_per_pixel_colour_ops():
    keras.utils.set_random_seed(0)
    model = pilotnet(FRAME)
    plain = collections.Counter(n.op_type for n in export_onnx_proto(model).graph.node)
    folded = collections.Counter(n.op_type for n in export_onnx_proto(fold_preprocessing(model)[0]).graph.node)
    dense_layers = sum(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    assert plain["MatMul"] == dense_layers + 1 and folded["MatMul"] == dense_layers
    assert folded["Conv"] == plain["Conv"] == 5 and folded["Resize"] == 1


def _small(first_layer) -> keras.Model:
    inputs = keras.Input(FRAME, dtype="uint8")
    x = FramePreprocess(crop=(10, 4), size=(16, 32))(inputs)
    x = keras.layers.Flatten()(first_layer(x))
    return keras.Model(inputs, keras.layers.Dense(1)(x))


@pytest.mark.parametrize("first_layer,reason", [
    (lambda: keras.layers.Conv2D(4, 3, padding="same"), "pads its input"),
    (lambda: keras.layers.Dense(4), "is a Dense, not a convolution"),
])
def test_unfoldable_models_are_returned_unchanged_with_the_reason(first_layer, reason):
    model = _small(first_layer())
    same, note = fold_preprocessing(model)
    assert same is model and reason in note


def test_model_without_preprocessing_is_returned_unchanged():
    model = pilotnet((66, 200, 3), preprocess=False)
    same, note = fold_preprocessing(model)
    assert same is model and "no FramePreprocess" in note


def test_first_convolution_without_bias_gets_one():
    keras.utils.set_random_seed(1)
    model = _small(keras.layers.Conv2D(4, 3, strides=2, use_bias=False))
    folded, note = fold_preprocessing(model)
    assert "folded" in note and "not" not in note
    np.testing.assert_allclose(folded.predict(FRAMES, verbose=0), model.predict(FRAMES, verbose=0), atol=1e-5)


def test_export_folds_by_default_and_checks_against_the_unfolded_model(tmp_path):
    keras.utils.set_random_seed(0)
    path = tmp_path / "m.keras"
    pilotnet(FRAME).save(path)
    folded = export(path, "onnx", tmp_path / "f.onnx", parity_frames=4)
    plain = export(path, "onnx", tmp_path / "p.onnx", parity_frames=4, fold=False)
    assert folded.passed and plain.passed
    assert "colour conversion and scaling folded into conv1" in folded.notes
    assert folded.ops["MatMul"] == plain.ops["MatMul"] - 1


def _shared_conv() -> keras.Model:
    frames, other = keras.Input(FRAME, dtype="uint8"), keras.Input((16, 32, 3))
    conv = keras.layers.Conv2D(4, 3)
    x = conv(FramePreprocess(crop=(10, 4), size=(16, 32))(frames))
    merged = keras.layers.Concatenate()([x, conv(other)])
    return keras.Model([frames, other], keras.layers.Dense(1)(keras.layers.Flatten()(merged)))


def _preprocess_as_output() -> keras.Model:
    frames = keras.Input(FRAME, dtype="uint8")
    pre = FramePreprocess(crop=(10, 4), size=(16, 32))(frames)
    return keras.Model(frames, [keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(pre))), pre])


def _shared_preprocess() -> keras.Model:
    a, b = keras.Input(FRAME, dtype="uint8"), keras.Input(FRAME, dtype="uint8")
    pre = FramePreprocess(crop=(10, 4), size=(16, 32))
    merged = keras.layers.Concatenate()([keras.layers.Conv2D(4, 3)(pre(a)), keras.layers.Conv2D(4, 3)(pre(b))])
    return keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Flatten()(merged)))


@pytest.mark.parametrize("make,reason", [
    (_shared_conv, "is applied 2 times"),
    (_preprocess_as_output, "output is also a model output"),
    (_shared_preprocess, "FramePreprocess is applied 2 times"),
])
def test_layers_used_elsewhere_are_not_folded(make, reason):
    """Folding rewrites the layers themselves: another use of them would silently change."""
    model = make()
    same, note = fold_preprocessing(model)
    assert same is model and reason in note


def test_mixed_precision_first_convolution_is_not_folded():
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = pilotnet(FRAME)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    same, note = fold_preprocessing(model)
    assert same is model and "bfloat16" in note
