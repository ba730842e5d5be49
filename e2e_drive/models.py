"""NVIDIA's PilotNet (Bojarski et al. 2016) with pluggable activations and convolutions.

The model takes the raw camera frame (uint8 RGB) and preprocesses it inside
itself with ``data_tools.frame_preprocess.FramePreprocess`` (crop -> 66x200 -> YUV ->
scale), so an exported model carries its preprocessing with it.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from data_tools.log import TARGETS
from data_tools.errors import first_line

ACTIVATIONS = ("elu", "relu", "prelu", "maxout", "rrelu", "apl")
CONVS = ("keras", "reference")

# The heads ``pilotnet(outputs=...)`` can have, in the order every artifact lists them.
OUTPUTS = TARGETS  # the heads a model can have: what a dataset can label, in that order

# (filters, kernel, stride) of the five conv layers and the dense widths, as in the paper.
CONV_SPECS = ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1))
DENSE_UNITS = (100, 50, 10)


def check_activation(activation: str) -> str:
    """Return ``activation`` if known, else raise ValueError listing the valid names."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; expected one of: {', '.join(ACTIVATIONS)}")
    return activation


def check_conv(conv: str) -> str:
    if conv not in CONVS:
        raise ValueError(f"Unknown conv {conv!r}; expected one of: {', '.join(CONVS)}")
    return conv


def _activation_layer(activation: str, name: str, seed: int | None, spatial: bool):
    import keras

    import custom_layers

    if activation == "elu":
        return custom_layers.ELU(name=name)
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    if activation == "prelu":
        # One slope per channel (as He et al.), not per pixel: keeps PilotNet's parameter count.
        return custom_layers.PReLU(shared_axes=[1, 2] if spatial else None, name=name)
    if activation == "rrelu":
        return custom_layers.RReLU(seed=seed, name=name)
    if activation == "apl":
        return custom_layers.APL(name=name)  # learned per channel
    raise AssertionError(activation)  # maxout is handled by the caller


def pilotnet(
    input_shape: Sequence[int] = (160, 320, 3),
    activation: str = "elu",
    conv: str = "keras",
    dropout: float = 0.0,
    preprocess: bool = True,
    crop: Sequence[int] | None = None,
    seed: int | None = None,
    outputs: Sequence[str] = ("steering",),
):
    """Build PilotNet: conv 24/36/48 5x5 stride 2, conv 64/64 3x3, dense 100/50/10, output 1 (or 2).

    Args:
        input_shape: ``(H, W, 3)`` of the raw frames (``preprocess=True``) or of
            the already preprocessed 66x200 YUV input. Defaults to `(160, 320, 3)`.
        activation: one of ``elu``, ``relu``, ``prelu``, ``maxout``, ``rrelu``,
            ``apl`` (the custom layers of ``custom_layers``; maxout doubles the
            units of each conv/dense layer and keeps the max of each pair).
            Defaults to `"elu"`.
        conv: ``"keras"`` (``keras.layers.Conv2D``) or ``"reference"``
            (``custom_layers.ReferenceConv2D``). Defaults to `"keras"`.
        dropout: dropout rate after the flatten and each dense layer. Defaults to `0.0`.
        preprocess: take raw uint8 RGB frames and preprocess inside. Defaults to `True`.
        crop: rows ``(top, bottom)`` cut from the frame; defaults to
            ``data_tools.preprocess.default_crop(H)``.
        seed: seeds the kernel initializers and RReLU. Defaults to `None`.
        outputs: the heads, from ``("steering", "throttle")``: ``("steering",)`` is the single-output model
            (a ``(B, 1)`` tensor out, exactly as before); ``("steering", "throttle")`` adds a float32
            ``throttle`` Dense(1) head beside ``steering`` and the model returns a dict
            ``{"steering": (B, 1), "throttle": (B, 1)}``, so ``model.fit(x, {"steering": s, "throttle": t})``
            and ``loss={"steering": "mse", "throttle": "mse"}`` work as Keras documents. Defaults to
            `("steering",)`.

    Returns:
        a ``keras.Model`` mapping ``(B, H, W, 3)`` frames to ``(B, 1)`` float32 steering (or the dict above).

    Example:
        >>> model = pilotnet((160, 320, 3), activation="prelu")
        >>> model.predict(np.zeros((1, 160, 320, 3), "uint8")).shape
        (1, 1)
    """
    import keras

    import custom_layers
    from data_tools.frame_preprocess import FramePreprocess
    from data_tools.preprocess import MODEL_INPUT_SHAPE, check_crop, default_crop

    check_activation(activation)
    check_conv(conv)
    heads = check_outputs(outputs)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"Expected 0 <= dropout < 1. Received: dropout={dropout}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"Expected input_shape=(H, W, 3). Received: input_shape={input_shape}")

    conv_class: Callable = keras.layers.Conv2D if conv == "keras" else custom_layers.ReferenceConv2D
    width = 2 if activation == "maxout" else 1
    seeds = iter(range(1000)) if seed is None else iter(range(seed * 1000, seed * 1000 + 1000))

    def initializer():
        return keras.initializers.GlorotUniform(seed=None if seed is None else next(seeds))

    def activate(x, units: int, name: str, spatial: bool):
        if activation == "maxout":
            return custom_layers.Maxout(num_units=units, name=name)(x)
        return _activation_layer(activation, name, None if seed is None else next(seeds), spatial)(x)

    inputs = keras.Input(shape=input_shape, dtype="uint8" if preprocess else "float32", name="frames")
    if preprocess:
        crop = default_crop(input_shape[0]) if crop is None else check_crop(input_shape[0], crop)
        x = FramePreprocess(crop=crop, name="preprocess")(inputs)
    else:
        if input_shape != MODEL_INPUT_SHAPE:
            raise ValueError(f"Expected input_shape={MODEL_INPUT_SHAPE} with preprocess=False. "
                             f"Received: input_shape={input_shape}")
        x = inputs
    for i, (filters, kernel, stride) in enumerate(CONV_SPECS, 1):
        x = conv_class(filters * width, kernel, strides=stride, kernel_initializer=initializer(), name=f"conv{i}")(x)
        x = activate(x, filters, f"conv{i}_{activation}", spatial=True)
    x = keras.layers.Flatten(name="flatten")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed, name="flatten_dropout")(x)
    for i, units in enumerate(DENSE_UNITS, 1):
        x = keras.layers.Dense(units * width, kernel_initializer=initializer(), name=f"dense{i}")(x)
        x = activate(x, units, f"dense{i}_{activation}", spatial=False)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed, name=f"dense{i}_dropout")(x)
    # float32 outputs even under mixed precision: the loss is computed on them. Each head draws its own
    # initializer seed in OUTPUTS order, so the steering head of a two-head model equals the one-head model's.
    dense = {name: keras.layers.Dense(1, dtype="float32", kernel_initializer=initializer(), name=name)
             for name in OUTPUTS if name in heads}
    if heads == ("steering",):
        return keras.Model(inputs, dense["steering"](x), name=f"pilotnet_{activation}_{conv}")
    return keras.Model(inputs, {name: dense[name](x) for name in heads}, name=f"pilotnet_{activation}_{conv}")


def check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    """``outputs`` as a tuple in ``OUTPUTS`` order; a ValueError for an unknown, repeated or missing head."""
    if isinstance(outputs, str):
        outputs = (outputs,)
    outputs = tuple(outputs)
    unknown = [name for name in outputs if name not in OUTPUTS]
    if unknown or len(set(outputs)) != len(outputs) or "steering" not in outputs:
        raise ValueError(f"Expected outputs from {OUTPUTS}, each once, steering included. "
                         f"Received: outputs={outputs}")
    return tuple(name for name in OUTPUTS if name in outputs)


def output_names(model) -> tuple[str, ...]:
    """The names of a model's outputs, steering first: ``("steering",)`` for a single-output model, else the
    keys of its output dict (or its output layers' names)."""
    structure = model.output
    if isinstance(structure, dict):
        names = list(structure)
    elif isinstance(structure, (list, tuple)) and len(structure) > 1:
        names = list(model.output_names)
    else:
        return ("steering",)
    return tuple(sorted(names, key=lambda name: (name != "steering", names.index(name))))


def steering_function(model) -> Callable:
    """``model`` as a predictor: uint8 frames ``(B, H, W, 3)`` -> float32 steering ``(B,)`` (inference mode),
    what the simulator and the log replay drive with. The call runs as one traced graph: closed-loop driving
    calls it once per frame, and an eager call of PilotNet costs about ten times the graph's (22 vs 2.5 ms per
    frame on one CPU thread). The graph reads the model's variables, so it follows weights that change."""
    import numpy as np
    import tensorflow as tf

    infer = tf.function(lambda frames: model(frames, training=False), reduce_retracing=True)

    def steer(frames):
        outputs = infer(frames)
        if isinstance(outputs, dict):
            outputs = outputs["steering"]
        elif isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        return np.asarray(outputs, np.float32).reshape(len(frames))

    return steer


def conv_layers(model) -> list:
    """The model's convolution layers, shallowest first (what VisualBackProp walks)."""
    import keras

    import custom_layers

    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, custom_layers.ReferenceConv2D))]


def frame_shape(model) -> tuple[int, int, int]:
    """The ``(H, W, 3)`` frames a model takes."""
    return tuple(int(d) for d in model.inputs[0].shape[1:])


def check_fits(model, shape: Sequence[int], where: str) -> None:
    """Raise ValueError when ``model`` cannot take frames of ``shape`` (from ``where``)."""
    expected = frame_shape(model)
    if tuple(int(d) for d in shape) != expected:
        raise ValueError(
            f"model {model.name!r} takes frames of shape {expected}, but {where} has frames of shape {tuple(shape)}"
        )


def load_model(path: str | os.PathLike, compile: bool = False):
    """Load a ``.keras`` model, the one Keras loader of the project, with a one-line error for a bad file.

    Plain ``keras.saving.load_model`` works too once ``e2e_drive`` is imported (it registers every layer);
    this adds messages that name the file and say what is wrong with it.
    """
    import zipfile

    import keras

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, expected a .keras model file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: model file does not exist")
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras model file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: cannot load the Keras model: not a zip archive (the file is damaged or "
                         "is another kind of file)")
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:  # zip, JSON or layer errors: all mean "not a usable model"
        raise ValueError(f"{path}: cannot load the Keras model: {first_line(error)}") from error
