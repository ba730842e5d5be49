"""Every custom layer exports to ONNX with standard ops and runs in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
import keras

from tests.builders import every_layer_model


def test_onnx_export_of_every_layer_matches_keras():
    keras.utils.set_random_seed(2)
    model = every_layer_model()
    spec = (tf.TensorSpec((None, 12, 12, 3), tf.float32, name="frames"),)

    @tf.function(input_signature=spec)
    def serve(frames):
        return model(frames, training=False)

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=17)
    domains = {node.domain for node in proto.graph.node}
    assert domains <= {"", "ai.onnx"}, domains
    op_types = {node.op_type for node in proto.graph.node}
    assert not {"Conv", "ConvTranspose"} & op_types  # ReferenceConv2D is slices + one matmul
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).uniform(size=(5, 12, 12, 3)).astype("float32")
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(onnx_out, model.predict(x, verbose=0), atol=1e-5)
