"""Fold the in-model colour conversion and scaling into the first convolution, for export.

``FramePreprocess`` ends with a per-pixel affine map, ``y = rgb @ A + offset``
(RGB -> YUV, then ``/ 127.5 - 1``). A convolution with ``valid`` padding that
reads ``y`` computes the same as one with kernel ``K'[h, w, c, o] = sum_e
A[c, e] K[h, w, e, o]`` and bias ``b'[o] = b[o] + sum_{h, w, e} K[h, w, e, o]
offset[e]`` reading ``rgb`` directly: no padding mixes in pixels the map never
saw, so the two are equal up to float rounding. The exported graph then loses
a MatMul and a broadcast Add over every pixel of the 66x200 frame (about a
third of ONNX Runtime's batch-1 time for PilotNet on a CPU).

Example:
    >>> folded, note = fold_preprocessing(model)
    >>> np.allclose(folded.predict(frames), model.predict(frames), atol=1e-5)
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

FOLDABLE_CONVOLUTIONS = ("Conv2D", "ReferenceConv2D")


def _colour_map() -> tuple[np.ndarray, np.ndarray]:
    from data_tools.preprocess import RGB_TO_YUV, SCALE, SHIFT, YUV_OFFSET

    return RGB_TO_YUV.T * SCALE, YUV_OFFSET * SCALE + SHIFT


def _why_not_foldable(model) -> tuple[str | None, Any, Any]:
    """``(reason it cannot be folded or None, the preprocess layer, the convolution after it)``."""
    preprocess = next((layer for layer in model.layers if type(layer).__name__ == "FramePreprocess"), None)
    if preprocess is None:
        return "the model has no FramePreprocess layer", None, None
    if not preprocess.colour:
        return "the colour conversion is already folded", preprocess, None
    # Folding changes the layers themselves, so every use of them must be the one rewired here.
    if len(preprocess._inbound_nodes) != 1:
        return f"FramePreprocess is applied {len(preprocess._inbound_nodes)} times", preprocess, None
    if any(preprocess.output is output for output in model.outputs):
        return "FramePreprocess's output is also a model output", preprocess, None
    consumers = [layer for layer in model.layers
                 if any(preprocess.output is t for node in layer._inbound_nodes for t in node.input_tensors)]
    if len(consumers) != 1:
        return f"FramePreprocess feeds {len(consumers)} layers, not one convolution", preprocess, None
    conv = consumers[0]
    kind = type(conv).__name__
    if kind not in FOLDABLE_CONVOLUTIONS:
        return f"the layer after FramePreprocess is a {kind}, not a convolution", preprocess, None
    if len(conv._inbound_nodes) != 1:
        return f"{conv.name} is applied {len(conv._inbound_nodes)} times", preprocess, None
    if conv.compute_dtype != "float32":
        # Its input would become RGB in [0, 255] in low precision: more rounding than the scaled YUV.
        return f"{conv.name} computes in {conv.compute_dtype} (mixed precision)", preprocess, None
    if conv.padding != "valid":
        return f"{conv.name} pads its input ({conv.padding!r}): padded zeros would not be colour-converted", \
            preprocess, None
    if getattr(conv, "groups", 1) != 1 or getattr(conv, "data_format", "channels_last") != "channels_last":
        return f"{conv.name} is grouped or channels-first", preprocess, None
    return None, preprocess, conv


def folded_weights(kernel: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Kernel ``(kh, kw, 3, filters)`` and bias of a convolution that reads RGB in [0, 255] instead of
    ``FramePreprocess``'s scaled YUV (computed in float64)."""
    matrix, offset = _colour_map()
    kernel64 = np.asarray(kernel, np.float64)
    bias64 = np.zeros(kernel64.shape[-1]) if bias is None else np.asarray(bias, np.float64)
    folded_kernel = np.einsum("ce,hweo->hwco", matrix, kernel64)
    folded_bias = bias64 + np.einsum("hweo,e->o", kernel64, offset)
    return folded_kernel.astype(np.float32), folded_bias.astype(np.float32)


def fold_preprocessing(model) -> tuple[Any, str]:
    """An equivalent model whose first convolution reads the resized RGB frame (see module docstring).

    Returns ``(model, note)``: the folded copy and what was folded, or the
    model itself and why nothing was (no ``FramePreprocess``, a padded first
    convolution, ...). The original model is not changed.
    """
    import keras

    reason, preprocess, conv = _why_not_foldable(model)
    if reason is not None:
        return model, f"preprocessing not folded: {reason}"

    def clone_layer(layer):
        config = layer.get_config()
        if layer is preprocess:
            config["colour"] = False
        elif layer is conv:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone_layer)
    for layer in model.layers:
        if not layer.weights:
            continue  # input layers, which the clone may rename
        weights = layer.get_weights()
        if layer is conv:
            weights = list(folded_weights(conv.kernel.numpy(), None if conv.bias is None else conv.bias.numpy()))
        folded.get_layer(layer.name).set_weights(weights)
    return folded, f"colour conversion and scaling folded into {conv.name}"


__all__ = ["fold_preprocessing", "folded_weights"]
