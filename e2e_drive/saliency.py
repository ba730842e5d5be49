"""VisualBackProp (Bojarski et al. 2017, "VisualBackProp: efficient visualization of CNNs").

Average each conv layer's (activated) feature maps over channels; starting from
the deepest, scale the map up to the size of the next shallower one with a
transposed convolution of ones (the layer's kernel size and stride), multiply
pointwise, and repeat down to the model input. The 66x200 mask is then mapped
back through the resize onto the crop area of the original frame.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _activated_outputs(model) -> list:
    """For each conv layer, shallowest first, the tensor after its activation."""
    from e2e_drive.models import conv_layers

    outputs = []
    by_input = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                by_input.setdefault(id(tensor), layer)
    for conv in conv_layers(model):
        tensor = conv.output
        follower = by_input.get(id(tensor))
        # The activation (ELU, PReLU, Maxout, ...) keeps the spatial size; VBP uses the activated maps.
        if follower is not None and len(follower.output.shape) == 4 and follower.output.shape[1:3] == tensor.shape[1:3]:
            tensor = follower.output
        outputs.append((conv, tensor))
    if not outputs:
        raise ValueError(f"model {model.name!r} has no convolution layers; VisualBackProp needs some")
    return outputs


def _upscale(mask, kernel_size: Sequence[int], strides: Sequence[int], size: Sequence[int]):
    """Transposed convolution with a kernel of ones, zero-padded to ``size`` (valid padding drops a remainder)."""
    import tensorflow as tf

    kernel = tf.ones((*kernel_size, 1, 1), mask.dtype)
    batch = tf.shape(mask)[0]
    height = (mask.shape[1] - 1) * strides[0] + kernel_size[0]
    width = (mask.shape[2] - 1) * strides[1] + kernel_size[1]
    up = tf.nn.conv2d_transpose(mask, kernel, tf.stack([batch, height, width, 1]), strides=strides, padding="VALID")
    if (height, width) != tuple(size):
        up = tf.image.resize_with_crop_or_pad(up, size[0], size[1]) if height > size[0] or width > size[1] else \
            tf.pad(up, [[0, 0], [0, size[0] - height], [0, size[1] - width], [0, 0]])
    return up


def visual_backprop(model, frames: np.ndarray, *, on_frame: bool = True) -> np.ndarray:
    """VisualBackProp masks of ``frames`` for ``model``.

    Args:
        model: a PilotNet-like ``keras.Model`` (conv layers with 'valid' padding).
        frames: ``(B, H, W, 3)`` frames as the model takes them (raw uint8 RGB).
        on_frame: map the mask from the model's 66x200 input back onto the frame
            (zero outside the crop). Defaults to `True`.

    Returns:
        float32 masks in [0, 1]: ``(B, H, W)`` with ``on_frame``, else the size
        of the first conv layer's input.

    Example:
        >>> masks = visual_backprop(model, frames)   # (B, 160, 320)
    """
    import keras
    import tensorflow as tf

    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    expected = tuple(model.inputs[0].shape[1:])
    if frames.shape[1:] != expected:
        raise ValueError(f"model {model.name!r} takes frames of shape {expected}; received frames {frames.shape[1:]}")
    pairs = _activated_outputs(model)
    first_conv = pairs[0][0]
    probe = keras.Model(model.inputs[0], [first_conv.input] + [tensor for _, tensor in pairs])
    values = probe(frames, training=False)
    conv_input, maps = values[0], values[1:]
    mask = None
    for (conv, _), feature in zip(reversed(pairs), reversed(maps)):
        average = tf.reduce_mean(tf.cast(feature, tf.float32), axis=-1, keepdims=True)
        mask = average if mask is None else average * mask
        below = conv.input.shape[1:3]
        mask = _upscale(mask, conv.kernel_size, conv.strides, below)
    mask = mask[..., 0].numpy()
    low = mask.reshape(len(mask), -1).min(axis=1)[:, None, None]
    high = mask.reshape(len(mask), -1).max(axis=1)[:, None, None]
    mask = ((mask - low) / np.maximum(high - low, 1e-12)).astype(np.float32)
    del conv_input
    if not on_frame:
        return mask
    return np.stack([to_frame(m, model, frames.shape[1:3]) for m in mask])


def to_frame(mask: np.ndarray, model, frame_size: Sequence[int]) -> np.ndarray:
    """Map a model-input mask back through the resize onto the crop area of the frame."""
    import cv2

    height, width = int(frame_size[0]), int(frame_size[1])
    layer = next((l for l in model.layers if l.name == "preprocess" or hasattr(l, "crop")), None)
    top, bottom = layer.crop if layer is not None else (0, 0)
    out = np.zeros((height, width), np.float32)
    out[top : height - bottom] = cv2.resize(mask, (width, height - top - bottom), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The frame (RGB uint8) with the mask drawn on it in green."""
    frame = frame.astype(np.float32)
    green = np.zeros_like(frame)
    green[..., 1] = 255.0
    weight = alpha * mask[..., None]
    return np.clip(frame * (1 - weight) + green * weight, 0, 255).astype(np.uint8)


def saliency_image(model_path: str, image_path: str, out: str) -> dict:
    """``e2e-drive saliency``: VisualBackProp of one frame, written as frame | overlay | mask PNG."""
    import matplotlib  # heavy: only when a picture is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_tools.frames import read_frame
    from data_tools.io import save_figure
    from e2e_drive.models import check_fits, load_model

    model = load_model(model_path)
    frame = read_frame(image_path, where=image_path)
    check_fits(model, frame.shape, image_path)
    mask = visual_backprop(model, frame[None])[0]
    steering = float(np.asarray(model(frame[None], training=False)).reshape(-1)[0])
    fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
    for ax, image, title in zip(axes, (frame, overlay(frame, mask), mask),
                                ("frame", f"VisualBackProp (steering {steering:+.3f})", "mask")):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1 if image.ndim == 2 else None)
        ax.set_title(title)
        ax.axis("off")
    save_figure(fig, out, dpi=100)
    return {"model": model_path, "image": image_path, "out": out, "steering": steering,
            "mask_mean": float(mask.mean())}
