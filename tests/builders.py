"""Small data and models the tests build: importable from test modules and from scripts the tests run.

``conftest.py`` exposes each builder as a fixture; subprocess scripts import them from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_tools.frames import write_frame
from data_tools.log import DrivingLog

FRAME = (40, 80, 3)


def tiny_model(activation: str = "all", conv: str = "keras", frame=FRAME, seed: int = 0):
    """A small steering net on raw uint8 frames: FramePreprocess, then the chosen activation and convolution."""
    import keras

    from custom_layers import APL, ELU, Maxout, PReLU, ReferenceConv2D, RReLU
    from data_tools.frame_preprocess import FramePreprocess

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(frame, dtype="uint8")
    x = FramePreprocess(crop=(frame[0] // 4, frame[0] // 10), size=(16, 32))(inputs)
    conv_layer = ReferenceConv2D if conv == "reference" else keras.layers.Conv2D
    activations = {"elu": lambda: ELU(trainable_alpha=True), "prelu": lambda: PReLU(shared_axes=[1, 2]),
                   "maxout": lambda: Maxout(4), "rrelu": lambda: RReLU(seed=1), "apl": lambda: APL(num_hinges=2),
                   "relu": lambda: keras.layers.ReLU()}
    chosen = list(activations) if activation == "all" else [activation]
    x = conv_layer(8, 3, strides=2)(x)
    for name in chosen:
        x = activations[name]()(x)
        if name == "maxout":
            x = conv_layer(8, 1)(x)  # restore the channel count Maxout halved
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8)(x)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    # Non-trivial weights for the parametric activations (their initial values would hide a dropped layer).
    for layer in model.layers:
        if isinstance(layer, (PReLU, APL, ELU)):
            layer.set_weights([np.random.default_rng(1).uniform(0.1, 0.9, w.shape) for w in layer.get_weights()])
    return model


def every_layer_model(input_shape=(12, 12, 3)):
    """Every custom layer in one float-input net (ReferenceConv2D with same and int padding)."""
    import keras

    from custom_layers import APL, ELU, Maxout, PReLU, ReferenceConv2D, RReLU

    inputs = keras.Input(input_shape)
    x = ReferenceConv2D(8, 3, strides=2, padding="same")(inputs)
    x = PReLU(shared_axes=[1, 2])(x)
    x = ReferenceConv2D(8, 3, padding=1)(x)
    x = ELU(trainable_alpha=True, shared_axes=[1, 2])(x)
    x = Maxout(4)(x)
    x = APL(num_hinges=2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16)(x)
    x = RReLU(seed=1)(x)
    x = keras.layers.Dense(8)(x)
    x = Maxout(2)(x)
    outputs = keras.layers.Dense(1, dtype="float32")(x)
    return keras.Model(inputs, outputs)


LOG_FRAME = (40, 80)
CROP = (4, 4)


def synthetic_log(folder: Path, n: int = 48, seed: int = 0, recordings: int = 1,
                  learnable_throttle: bool = False) -> DrivingLog:
    """Frames whose bright vertical bar sits where the steering points (a learnable signal).

    Left/right cameras see the bar shifted, as the real side cameras would. The throttle is 0, or with
    ``learnable_throttle`` ``0.5 + 0.3 cos(i / 2.5)`` (independent of the steering), shown by a bright horizontal
    line as many rows below the crop's top as the throttle says (the same in every camera: it does not depend
    on where the car looks).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    steering = (0.6 * np.sin(np.arange(n) / 5.0)).astype(np.float32)
    throttle = (0.5 + 0.3 * np.cos(np.arange(n) / 2.5)).astype(np.float32) if learnable_throttle else None
    columns = {"center": [], "left": [], "right": []}
    for i, value in enumerate(steering):
        for camera, shift in (("center", 0), ("left", -8), ("right", 8)):
            frame = rng.integers(20, 60, (*LOG_FRAME, 3)).astype(np.uint8)
            x = int(LOG_FRAME[1] / 2 + value * 30 + shift)
            frame[:, max(0, x - 3) : x + 3] = 230
            if throttle is not None:
                y = int(CROP[0] + 2 + throttle[i] * 30)
                frame[y : y + 2, :] = 200
            path = folder / f"{camera}_{i:04d}.png"
            write_frame(path, frame)
            columns[camera].append(str(path))
    return DrivingLog.from_columns(
        center=columns["center"], left=columns["left"], right=columns["right"], steering=steering,
        throttle=throttle, source=str(folder / "log.csv"), row=np.arange(1, n + 1),
        recording=np.repeat(np.arange(recordings), -(-n // recordings))[:n],
    )


def make_udacity_log(folder: Path, rows: list[str] | None = None, n: int = 4, header: bool = False,
             path_style: str = "relative") -> Path:
    """A tiny Udacity log: n rows of 3 cameras, 32x16 JPEGs, with the given path style."""
    img = folder / "IMG"
    img.mkdir(parents=True, exist_ok=True)
    lines = ["center,left,right,steering,throttle,brake,speed"] if header else []
    for i in range(n):
        cells = []
        for camera in ("center", "left", "right"):
            name = f"{camera}_{i:03d}.jpg"
            write_frame(img / name, np.full((16, 32, 3), 10 * i, np.uint8))
            cells.append({
                "relative": f"IMG/{name}",
                "absolute": str(img / name),
                "windows": f"C:\\Users\\someone\\Desktop\\data\\IMG\\{name}",
                "posix_elsewhere": f"/home/else/data/IMG/{name}",
            }[path_style])
        lines.append(", ".join(cells + [f"{(i - n / 2) / n:.3f}", "0.5", "0", f"{20 + i}"]))
    if rows is not None:
        lines += rows
    (folder / "driving_log.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


BAD_ROWS = [
    ("IMG/center_000.jpg, IMG/left_000.jpg, IMG/right_000.jpg, abc, 0, 0, 1", "steering is not a number: 'abc'"),
    ("IMG/center_000.jpg, IMG/left_000.jpg, IMG/right_000.jpg, nan, 0, 0, 1", "steering is not finite"),
    ("IMG/center_000.jpg, IMG/left_000.jpg, IMG/right_000.jpg, inf, 0, 0, 1", "steering is not finite"),
    ("IMG/center_000.jpg, IMG/left_000.jpg, IMG/right_000.jpg, 1.5, 0, 0, 1", r"steering 1.5 is outside \[-1, 1\]"),
    ("IMG/center_000.jpg, IMG/left_000.jpg, IMG/right_000.jpg, 0.1, 0, 0", "expected 7 columns, found 6"),
    ("IMG/nope.jpg, IMG/left_000.jpg, IMG/right_000.jpg, 0.1, 0, 0, 1", "center image not found: IMG/nope.jpg"),
    ("IMG, IMG/left_000.jpg, IMG/right_000.jpg, 0.1, 0, 0, 1", "center image path is a directory"),
]


def make_tub(folder: Path, records: int = 6, per_catalog: int = 4, deleted=(1,), extra_lines=None) -> Path:
    """A tub in donkeycar's v2 layout."""
    (folder / "images").mkdir(parents=True)
    catalogs = []
    for start in range(0, records, per_catalog):
        name = f"catalog_{start // per_catalog}.catalog"
        catalogs.append(name)
        lines = []
        for index in range(start, min(start + per_catalog, records)):
            image = f"{index}_cam_image_array_.jpg"
            write_frame(folder / "images" / image, np.full((12, 16, 3), index, np.uint8))
            lines.append(json.dumps({"_index": index, "_timestamp_ms": 1000 + index, "cam/image_array": image,
                                     "user/angle": index / 10, "user/mode": "user", "user/throttle": 0.3}))
        (folder / name).write_text("\n".join(lines + (extra_lines or [] if start + per_catalog >= records else [])) + "\n")
    manifest = [
        ["cam/image_array", "user/angle", "user/throttle", "user/mode"],
        ["image_array", "float", "float", "str"],
        {},
        {"created_at": 0.0, "sessions": {}},
        {"paths": catalogs, "current_index": records, "max_len": per_catalog, "deleted_indexes": list(deleted)},
    ]
    (folder / "manifest.json").write_text("\n".join(json.dumps(line) for line in manifest) + "\n")
    return folder


def config_of_version(config, version: int) -> dict:
    """``config.to_dict()`` as a config.json of ``version`` held it: the fields declared later left out."""
    newer = {name for since, names in type(config).fields_since().items() if since > version for name in names}
    return {**{k: v for k, v in config.to_dict().items() if k not in newer}, "version": version}
