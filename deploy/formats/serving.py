"""The serving function every graph format converts: uint8 frames in, one float32 tensor per model output."""

from __future__ import annotations

from deploy.predictor import DONKEYCAR_INPUT, DONKEYCAR_OUTPUTS

INPUT_NAME = "frames"


def model_outputs(model, x) -> dict:
    """The model's outputs on ``x`` as ``{name: tensor}`` (a single-output model: ``{"steering": ...}``)."""
    out = model(x, training=False)
    if isinstance(out, dict):
        return dict(out)
    if isinstance(out, (list, tuple)):
        return dict(zip(model.output_names, out))
    return {"steering": out}


def serving_function(model, input_dtype: str = "uint8", donkeycar_throttle: float | None = None):
    """A tf.function on frames [None, H, W, 3] returning ``{output name: [None, 1] float32}``, and its spec.

    ``donkeycar_throttle`` set: the donkeycar pilot's signature instead: ``img_in`` float32 frames divided by
    255 (rounded back to the uint8 frame inside, so the model sees exactly the camera's pixels) returning
    ``n_outputs0`` (steering) and ``n_outputs1`` (the throttle head, or this constant without one).
    """
    import tensorflow as tf  # heavy: only when exporting

    shape = tuple(model.input_shape[1:])
    model_dtype = model.inputs[0].dtype
    if donkeycar_throttle is None:
        spec = (tf.TensorSpec((None, *shape), getattr(tf, input_dtype), name=INPUT_NAME),)

        @tf.function(input_signature=spec)
        def serve(frames):
            outputs = model_outputs(model, tf.cast(frames, model_dtype))
            return {name: tf.cast(value, tf.float32) for name, value in outputs.items()}

        return serve, spec

    spec = (tf.TensorSpec((None, *shape), tf.float32, name=DONKEYCAR_INPUT),)

    @tf.function(input_signature=spec)
    def serve_donkeycar(img_in):
        pixels = tf.clip_by_value(tf.round(img_in * 255.0), 0.0, 255.0)
        outputs = model_outputs(model, tf.cast(pixels, model_dtype))
        steering = tf.cast(outputs["steering"], tf.float32)
        if "throttle" in outputs:
            throttle = tf.cast(outputs["throttle"], tf.float32)
        else:
            throttle = tf.fill(tf.shape(steering), tf.constant(donkeycar_throttle, tf.float32))
        angle, throttle_name = DONKEYCAR_OUTPUTS  # KerasLinear's order: angle, then throttle
        return {angle: steering, throttle_name: throttle}

    return serve_donkeycar, spec
