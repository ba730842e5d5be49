"""``FramePreprocess``: the Keras layer of the one preprocessing definition (``data_tools.preprocess``).

Kept apart from ``data_tools.preprocess`` so that reading and checking logs does not import TensorFlow;
``import e2e_drive`` imports this module, which registers the layer for ``keras.saving.load_model``.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from data_tools.preprocess import MODEL_HEIGHT, MODEL_WIDTH, RGB_TO_YUV, SCALE, SHIFT, YUV_OFFSET, check_crop


# The registered name "data_tools>FramePreprocess" is what every saved model refers to: keep it.
@keras.saving.register_keras_serializable(package="data_tools")
class FramePreprocess(keras.layers.Layer):
    """Crop, resize, convert RGB to YUV and scale, inside the model.

    ``y = (M @ rgb + offset) / 127.5 - 1`` after cropping ``crop`` rows and a
    bilinear resize to ``size``; ``M`` and ``offset`` are OpenCV's RGB->YUV.
    Always computes in float32 (also under a mixed-precision policy).

    Args:
        crop: rows ``(top, bottom)`` cut from the frame (sky and bonnet).
        size: output ``(height, width)``. Defaults to `(66, 200)`.
        colour: convert to YUV and scale to [-1, 1]. ``False`` stops after the resize (RGB in
            [0, 255]), for a first convolution with the conversion folded into its weights
            (``deploy.fold``). Defaults to `True`.

    Input shape: ``(batch, H, W, 3)`` RGB, uint8 or float in [0, 255].
    Output shape: ``(batch, size[0], size[1], 3)``.

    Example:
        >>> layer = FramePreprocess(crop=(60, 25))
        >>> layer(np.zeros((1, 160, 320, 3), "uint8")).shape
        (1, 66, 200, 3)
    """

    def __init__(self, crop: Sequence[int] = (60, 25), size: Sequence[int] = (MODEL_HEIGHT, MODEL_WIDTH),
                 colour: bool = True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.colour = bool(colour)
        self.crop = (int(crop[0]), int(crop[1]))
        self.size = (int(size[0]), int(size[1]))
        if min(self.crop) < 0:
            raise ValueError(f"Expected crop rows >= 0. Received: crop={self.crop}")
        if min(self.size) < 1:
            raise ValueError(f"Expected a positive size. Received: size={self.size}")

    def build(self, input_shape):
        if input_shape[-1] != 3:
            raise ValueError(f"Expected RGB input with 3 channels. Received: input_shape={input_shape}")
        if input_shape[1] is not None:
            check_crop(int(input_shape[1]), self.crop)

    def call(self, inputs):
        height = ops.shape(inputs)[1]
        # Crop before the cast: only the kept rows are converted to float.
        x = ops.cast(inputs[:, self.crop[0] : height - self.crop[1], :, :], "float32")
        x = ops.image.resize(x, self.size, interpolation="bilinear", antialias=False)
        if not self.colour:
            return x
        matrix = ops.convert_to_tensor(RGB_TO_YUV.T.astype(np.float32))
        offset = ops.convert_to_tensor((YUV_OFFSET * SCALE + SHIFT).astype(np.float32))
        return ops.matmul(x, matrix * SCALE) + offset

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size[0], self.size[1], 3)

    def get_config(self):
        config = super().get_config()
        config.update({"crop": list(self.crop), "size": list(self.size), "colour": self.colour})
        return config
