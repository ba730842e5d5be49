"""``e2e-drive bench layers``: train-step time of each custom layer against its built-in twin.

Each pair of models is identical but for the layer under test. Steps are timed
interleaved (ours, built-in, ours, ...) so the shared machine's noise hits both
sides alike; the figure is the ratio of medians.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from data_tools.progress import progress


def _models(input_shape) -> dict[str, tuple[Callable, Callable]]:
    import keras
    from keras import layers

    from custom_layers import ELU, Maxout, PReLU, ReferenceConv2D

    class ReshapeMax(layers.Layer):
        """The composition Maxout replaces: reshape to groups, reduce_max (written in place)."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def call(self, x):
            groups = keras.ops.reshape(x, (-1, x.shape[1], x.shape[2], self.units, x.shape[3] // self.units))
            return keras.ops.max(groups, axis=-1)

    def net(conv=layers.Conv2D, activation=lambda: layers.ELU(), widen=1, pool=None):
        inputs = keras.Input(input_shape)
        x = inputs
        for filters, kernel, stride in ((24, 5, 2), (36, 5, 2), (48, 3, 1)):
            x = conv(filters * widen, kernel, strides=stride)(x)
            x = pool(filters)(x) if pool else activation()(x)
        x = layers.GlobalAveragePooling2D()(x)
        outputs = layers.Dense(1)(x)
        return keras.Model(inputs, outputs)

    return {
        "Maxout": (lambda: net(widen=2, pool=lambda f: Maxout(f)), lambda: net(widen=2, pool=lambda f: ReshapeMax(f))),
        "PReLU": (lambda: net(activation=lambda: PReLU(shared_axes=[1, 2])),
                  # Keras' PReLU starts its slopes at 0, ours at He et al.'s 0.25: the same start for both.
                  lambda: net(activation=lambda: layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                                                              shared_axes=[1, 2]))),
        "ELU": (lambda: net(activation=lambda: ELU()), lambda: net(activation=lambda: layers.ELU())),
        "ReferenceConv2D": (lambda: net(conv=ReferenceConv2D), lambda: net(conv=layers.Conv2D)),
    }


COMPARISON = {
    "Maxout": "Conv2D(2k) + reshape/reduce_max",
    "PReLU": "keras.layers.PReLU",
    "ELU": "keras.layers.ELU",
    "ReferenceConv2D": "keras.layers.Conv2D",
}
TARGETS = {"Maxout": 1.2, "PReLU": 1.2, "ELU": 1.2, "ReferenceConv2D": 1.5}


def bench_layers(batch_size: int = 64, steps: int = 10, input_shape=(66, 200, 3), seed: int = 0) -> dict:
    """Median forward+backward step time of each custom layer vs its comparison, in one run.

    Returns:
        ``{"batch_size", "input_shape", "layers": {name: {"ours_ms", "builtin_ms", "ratio", "target", "comparison",
        "first_loss"}}}``
    """
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(size=(batch_size, *input_shape)).astype("float32"))
    y = tf.constant(rng.normal(size=(batch_size, 1)).astype("float32"))
    results = {}
    pairs = _models(input_shape)
    for name, (make_ours, make_builtin) in progress(list(pairs.items()), label="bench layers"):
        steps_fns, first_losses = [], []
        for make in (make_ours, make_builtin):
            keras.utils.set_random_seed(seed)
            model = make()
            optimizer = keras.optimizers.SGD(1e-3)

            @tf.function
            def train_step(model=model, optimizer=optimizer):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                return loss

            first_losses.append(float(train_step().numpy()))  # trace; the same seed gives the same start
            train_step().numpy()  # warm up
            steps_fns.append(train_step)
        times = [[], []]
        for _ in range(steps):
            for side, fn in enumerate(steps_fns):
                start = time.perf_counter()
                fn().numpy()
                times[side].append(time.perf_counter() - start)
        ours, builtin = (float(np.median(t)) * 1e3 for t in times)
        results[name] = {
            "ours_ms": round(ours, 2),
            "builtin_ms": round(builtin, 2),
            "ratio": round(ours / builtin, 3),
            "target": TARGETS[name],
            "comparison": COMPARISON[name],
            # The pair computes one function from one start: its first losses agree (like is timed with like).
            "first_loss": {"ours": first_losses[0], "builtin": first_losses[1]},
        }
    return {"batch_size": batch_size, "input_shape": list(input_shape), "steps": steps, "layers": results}


def format_layers_report(report: dict) -> str:
    lines = [f"train step (forward+backward), batch {report['batch_size']}, input {tuple(report['input_shape'])}, "
             f"median of {report['steps']} interleaved steps",
             f"{'layer':<16}{'ours ms':>10}{'builtin ms':>12}{'ratio':>8}{'target':>8}  comparison"]
    for name, row in report["layers"].items():
        flag = "" if row["ratio"] <= row["target"] else "  (missed)"
        lines.append(f"{name:<16}{row['ours_ms']:>10.2f}{row['builtin_ms']:>12.2f}{row['ratio']:>8.2f}"
                     f"{'<=' + str(row['target']):>8}  {row['comparison']}{flag}")
    return "\n".join(lines)
