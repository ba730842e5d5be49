"""Every custom layer, in the configurations the models use, through ``run_layer_test``."""

from __future__ import annotations

import pytest

from custom_layers import APL, ELU, Maxout, PReLU, ReferenceConv2D, RReLU
from tests.layer_test import run_layer_test

CASES = [
    # (layer, init kwargs, input shape, output shape, trainable weights)
    (Maxout, {"num_units": 4}, (2, 6, 6, 8), (2, 6, 6, 4), 0),
    (Maxout, {"num_units": 3, "axis": 1}, (2, 6, 5), (2, 3, 5), 0),
    (PReLU, {"shared_axes": [1, 2]}, (2, 5, 5, 3), (2, 5, 5, 3), 1),
    (PReLU, {}, (2, 7), (2, 7), 1),
    (ELU, {}, (2, 5, 5, 3), (2, 5, 5, 3), 0),
    (ELU, {"alpha": 0.7, "trainable_alpha": True, "shared_axes": [1, 2]}, (2, 5, 5, 3), (2, 5, 5, 3), 1),
    (RReLU, {"lower": 0.1, "upper": 0.3, "seed": 3}, (2, 4, 4, 3), (2, 4, 4, 3), 0),
    (APL, {"num_hinges": 2}, (2, 5, 5, 3), (2, 5, 5, 3), 2),
    (ReferenceConv2D, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, (2, 7, 7, 3),
     (2, 4, 4, 4), 2),
    (ReferenceConv2D, {"filters": 4, "kernel_size": (3, 2), "padding": 1, "use_bias": False}, (2, 6, 6, 3),
     (2, 6, 7, 4), 1),
]


@pytest.mark.parametrize("layer_cls, init_kwargs, input_shape, output_shape, weights", CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_layer_keeps_keras_conventions(layer_cls, init_kwargs, input_shape, output_shape, weights, rng, tmp_path):
    run_layer_test(layer_cls, init_kwargs, input_shape, output_shape, rng, tmp_path,
                   expected_trainable_weights=weights)
