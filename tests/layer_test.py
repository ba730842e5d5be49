"""``run_layer_test``: the conventions every custom layer keeps, checked the way Keras checks its own layers
(``keras/src/testing/test_case.py``): config round trip, registration, output shapes, a training step, saving,
mixed precision and an ONNX export through ``deploy``."""

from __future__ import annotations

from typing import Any

import numpy as np


def run_layer_test(layer_cls: type, init_kwargs: dict[str, Any], input_shape: tuple[int, ...],
                   expected_output_shape: tuple[int, ...], rng: np.random.Generator, tmp_path,
                   expected_trainable_weights: int = 0, onnx: bool = True) -> None:
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    from deploy.export import export_onnx_proto

    x = rng.normal(size=input_shape).astype("float32")

    # Registered under the package (``import e2e_drive`` / ``custom_layers`` is enough to load it) and a config
    # that rebuilds the same layer.
    layer = layer_cls(**init_kwargs)
    assert keras.saving.get_registered_name(layer_cls) == f"custom_layers>{layer_cls.__name__}"
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is layer_cls and revived.get_config() == config

    # Output shape: symbolic, eager and compute_output_shape agree, with an unknown batch too.
    symbolic = layer_cls(**init_kwargs)(keras.Input(input_shape[1:]))
    assert tuple(symbolic.shape) == (None, *expected_output_shape[1:])
    assert tuple(layer_cls(**init_kwargs).compute_output_shape((None, *input_shape[1:]))) == \
        (None, *expected_output_shape[1:])
    eager = layer_cls(**init_kwargs)
    assert tuple(eager(x).shape) == tuple(expected_output_shape)
    assert tuple(eager.compute_output_shape(input_shape)) == tuple(expected_output_shape)
    assert len(eager.trainable_weights) == expected_trainable_weights
    assert not eager.non_trainable_weights or all(not w.trainable for w in eager.non_trainable_weights)

    # A training step: every trainable weight gets a finite gradient and moves.
    inputs = keras.Input(input_shape[1:])
    trained = layer_cls(**init_kwargs)
    outputs = keras.layers.Dense(1, name="steering")(keras.layers.Flatten()(trained(inputs)))
    model = keras.Model(inputs, outputs)
    before = [np.array(w) for w in trained.trainable_weights]
    target = rng.normal(size=(input_shape[0], 1)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - target))
    gradients = tape.gradient(loss, trained.trainable_weights)
    for weight, gradient in zip(trained.trainable_weights, gradients):
        assert gradient is not None and np.all(np.isfinite(gradient)), weight.path
        assert np.any(np.asarray(gradient) != 0), f"{weight.path}: no gradient reaches it"
    keras.optimizers.SGD(0.1).apply(gradients, trained.trainable_weights)
    for old, weight in zip(before, trained.trainable_weights):
        assert not np.array_equal(old, np.array(weight)), weight.path

    # Saved and loaded with no custom_objects: the same inference outputs.
    path = tmp_path / f"{layer_cls.__name__}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)

    # Mixed precision: float16 compute, float32 variables, finite outputs.
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = layer_cls(**init_kwargs)
        y = mixed(x)
        assert mixed.compute_dtype == "float16" and y.dtype == "float16"
        assert all(w.dtype == "float32" for w in mixed.weights)
        assert np.all(np.isfinite(np.asarray(y, np.float32)))
    finally:
        keras.mixed_precision.set_global_policy("float32")

    # ONNX through deploy's exporter (standard ops only, it refuses others) matches Keras on onnxruntime.
    if onnx:
        proto = export_onnx_proto(model, input_dtype="float32")
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (exported,) = session.run(None, {session.get_inputs()[0].name: x})
        np.testing.assert_allclose(exported.reshape(-1), model.predict(x, verbose=0).reshape(-1), atol=1e-5)
