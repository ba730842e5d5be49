"""``TrainConfig``: every option of a training run, validated, and the schema of the run's ``config.json``.

``e2e_drive.train.train`` builds one from the options it is given (defaults come from here), records the
data it read (``frame_shape``, ``num_train``, ``num_val``) and writes it to ``config.json``. A resumed run
reads it back: options not given come from it, and options that would change what is trained are refused
(``resume_differences``).

Every validation error names the command-line flag, e.g. ``--lr: expected a finite number > 0, got nan``.

Versions: 2 added ``targets`` and ``loss_weights`` (issue 13); 3 the recipe's label smoothing, side correction,
car profile and selection; 4 ``viewpoint_shift`` and ``epoch_samples`` (issue 12); 5 ``camera`` (a calibration
for the viewpoint shifts and the closed-loop checks); 6 ``lr_schedule`` and ``speed``. An older file still loads,
with what that run trained with for the fields it lacks (``LEGACY_RECIPE``: a resumed run trains on as it
began), and is written back as the current version.

Example:
    >>> config = TrainConfig(data=("../shared/data/udacity_sim_a",), epochs=5)
    >>> TrainConfig.from_dict(config.to_dict()) == config
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass, fields
from typing import Any, Sequence

from data_tools.log import TARGETS

CONFIG_VERSION = 6
# Versions this code reads, each with the fields it introduced (absent from older files: their defaults apply).
FIELDS_SINCE = {1: (), 2: ("targets", "loss_weights"), 3: ("smooth_seconds", "side_correction", "car", "select_by"),
                4: ("viewpoint_shift", "epoch_samples"), 5: ("camera",), 6: ("lr_schedule", "speed")}
STRATEGIES = ("auto", "mirrored", "multiworker")
CACHE_MODES = ("auto", "memory", "disk", "none")
SELECT_BY = ("last", "val_loss", "autonomy")
LR_SCHEDULES = ("cosine", "constant")
VERBOSITY = (0, 1, 2)

# What may change when a run is resumed: how long it trains, how it talks, and how its frames are read.
# Everything else changes what is trained and is refused.
RESUMABLE_CHANGES = ("epochs", "verbose", "workers", "worker_processes", "cache", "cache_dir")
# What a config.json written before each version's recipe options trained with: before 3 no keyboard smoothing,
# the fixed 0.2 and selection by val_loss; before 4 no viewpoint shifts and one pass over the rows per epoch;
# before 6 a constant learning rate.
LEGACY_RECIPE = {3: {"smooth_seconds": 0.0, "side_correction": 0.2, "select_by": "val_loss", "car": "udacity"},
                 4: {"viewpoint_shift": 0.0, "epoch_samples": 0}, 6: {"lr_schedule": "constant"}}
# Recorded from the data when the run starts, not options.
RECORDED = ("version", "frame_shape", "num_train", "num_val")

# The command-line flag of each option (error messages name the flag the user typed).
FLAGS = {
    "data": "DATA", "learning_rate": "--lr", "augment": "--no-augment", "version": "config.json version",
    "frame_shape": "config.json frame_shape", "num_train": "config.json num_train",
    "num_val": "config.json num_val",
}


def flag(name: str) -> str:
    """The command-line flag of option ``name`` (``learning_rate`` -> ``--lr``, ``batch_size`` -> ``--batch-size``)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


class TrainConfigError(ValueError):
    """An option of a training run is invalid, or a saved config.json cannot be used."""


@dataclass(frozen=True)
class TrainConfig:
    """The options of a training run (see ``e2e_drive.train.train`` for what each does).

    ``frame_shape``, ``num_train`` and ``num_val`` are recorded once the data is read (``None`` before).
    ``augment`` is ``True`` (``default_augmentation()``), ``False``, or the ``repr`` of a custom transform.
    ``cache_dir`` ``None`` is ``data_tools.frame_cache.default_cache_dir()``.
    ``targets``: what the model learns, steering first (``("steering", "throttle")`` adds a throttle head).
    ``loss_weights``: the weight of each target's MSE in the loss, as ``(target, weight)`` pairs in ``targets``
    order; given as a mapping, ``"steering=1,throttle=0.5"`` or pairs, a target not named weighs 1.0
    (``weights`` gives them as a dict).
    """

    data: tuple[str, ...] = ()
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    activation: str = "elu"
    conv: str = "keras"
    dropout: float = 0.0
    targets: tuple[str, ...] = ("steering",)
    loss_weights: tuple[tuple[str, float], ...] | None = None
    augment: bool | str = True
    balance: bool = False
    seed: int = 0
    val_fraction: float = 0.2
    crop: tuple[int, int] | None = None
    smooth_steering: float = 0.0
    smooth_seconds: float | None = None
    side_correction: float | None = 0.2
    viewpoint_shift: float | None = None
    epoch_samples: int | None = None
    car: str | None = None
    camera: str | None = None
    speed: float | None = None
    select_by: str = "last"
    early_stopping: int = 5
    strategy: str = "auto"
    mixed_precision: bool = False
    workers: int = 1
    worker_processes: bool = False
    cache: str = "auto"
    cache_dir: str | None = None
    verbose: int = 1
    frame_shape: tuple[int, int, int] | None = None
    num_train: int | None = None
    num_val: int | None = None
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen: normalise in place)
        set_("data", _data(self.data))
        for name in ("epochs", "batch_size", "workers"):
            set_(name, _integer(name, getattr(self, name), minimum=1))
        for name in ("seed", "early_stopping"):
            set_(name, _integer(name, getattr(self, name), minimum=0))
        set_("learning_rate", _number("learning_rate", self.learning_rate, above=0.0))
        set_("dropout", _number("dropout", self.dropout, minimum=0.0, below=1.0))
        set_("val_fraction", _number("val_fraction", self.val_fraction, minimum=0.0, below=1.0))
        set_("smooth_steering", _number("smooth_steering", self.smooth_steering, minimum=0.0))
        if self.smooth_seconds is not None:
            set_("smooth_seconds", _number("smooth_seconds", self.smooth_seconds, minimum=0.0))
            if self.smooth_seconds and self.smooth_steering:
                raise TrainConfigError(f"{flag('smooth_seconds')} and {flag('smooth_steering')}: choose one "
                                       "(seconds of the time stamps, or frames)")
        if self.side_correction is not None:
            set_("side_correction", _number("side_correction", self.side_correction, minimum=0.0, below=1.0))
        if self.viewpoint_shift is not None:
            set_("viewpoint_shift", _number("viewpoint_shift", self.viewpoint_shift, minimum=0.0))
        if self.epoch_samples is not None:
            set_("epoch_samples", _integer("epoch_samples", self.epoch_samples, minimum=0))
        if self.speed is not None:
            set_("speed", _number("speed", self.speed, above=0.0))
        _choice("select_by", self.select_by, SELECT_BY)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for name in ("balance", "mixed_precision", "worker_processes"):
            _boolean(name, getattr(self, name))
        if not isinstance(self.augment, (bool, str)):
            raise TrainConfigError(f"{flag('augment')}: expected true, false or a transform's repr, "
                                   f"got {self.augment!r}")
        from e2e_drive.models import ACTIVATIONS, CONVS  # light: models imports Keras only inside functions
        from e2e_drive.replay.profiles import PROFILES  # here: it imports the simulator (OpenCV, SciPy), not Keras

        if self.car is not None:  # None: from the data (``e2e_drive.replay.car_for_log``), when the run starts
            _choice("car", self.car, tuple(PROFILES))
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("conv", self.conv, CONVS)
        _choice("strategy", self.strategy, STRATEGIES)
        set_("cache", "none" if self.cache is None else self.cache)
        _choice("cache", self.cache, CACHE_MODES)
        if self.verbose not in VERBOSITY or isinstance(self.verbose, bool):
            raise TrainConfigError(f"--verbose: expected 0, 1 or 2, got {self.verbose!r}")
        set_("verbose", int(self.verbose))
        if self.camera is not None:
            if not isinstance(self.camera, (str, os.PathLike)) or not os.fspath(self.camera):
                raise TrainConfigError(f"--camera: expected a camera calibration JSON file, got {self.camera!r}")
            set_("camera", os.fspath(self.camera))
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, os.PathLike)) or not os.fspath(self.cache_dir):
                raise TrainConfigError(f"--cache-dir: expected a folder path, got {self.cache_dir!r}")
            set_("cache_dir", os.fspath(self.cache_dir))
        set_("crop", _crop(self.crop))
        set_("targets", parse_targets(self.targets))
        set_("loss_weights", _loss_weights(self.loss_weights, self.targets))
        if self.frame_shape is not None:
            shape = tuple(_integer("frame_shape", d, minimum=1) for d in self.frame_shape)
            if len(shape) != 3 or shape[2] != 3:
                raise TrainConfigError(f"{flag('frame_shape')}: expected [H, W, 3], got {list(self.frame_shape)}")
            set_("frame_shape", shape)
        for name in ("num_train", "num_val"):
            if getattr(self, name) is not None:
                set_(name, _integer(name, getattr(self, name), minimum=0))
        if self.version != CONFIG_VERSION:
            raise TrainConfigError(f"{flag('version')}: this e2e-drive reads config versions "
                                   f"{', '.join(map(str, FIELDS_SINCE))} (and writes {CONFIG_VERSION}), "
                                   f"got {self.version!r}")

    @property
    def weights(self) -> dict[str, float]:
        """``loss_weights`` as ``{target: weight}`` (what ``keras.Model.compile(loss_weights=...)`` takes)."""
        return dict(self.loss_weights)

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists, ``loss_weights`` as an object); ``from_dict`` reads it back to an
        equal config."""
        payload = {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}
        payload["loss_weights"] = self.weights
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any], where: str = "config.json") -> "TrainConfig":
        """A config from ``to_dict``'s output; unknown or missing fields are errors naming ``where``."""
        if not isinstance(payload, dict):
            raise TrainConfigError(f"{where}: expected a JSON object, got {type(payload).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - names)
        if unknown:
            raise TrainConfigError(f"{where}: unknown field(s) {', '.join(unknown)} (written by another version?)")
        if "version" not in payload:
            raise TrainConfigError(f"{where}: no version field: not a config.json e2e-drive train wrote")
        version = payload["version"]
        if version in FIELDS_SINCE and version != CONFIG_VERSION and not isinstance(version, bool):
            newer = [name for v, names in FIELDS_SINCE.items() if v > version for name in names if name in payload]
            if newer:
                raise TrainConfigError(f"{where}: version {version} has no field(s) {', '.join(newer)} "
                                       "(a damaged or hand-edited file?)")
            # An older run: new fields take their defaults, except the recipe's, which keep what that run
            # trained with (LEGACY_RECIPE) so that it resumes as it began.
            legacy = {name: value for v, fields_ in LEGACY_RECIPE.items() if version < v
                      for name, value in fields_.items()}
            payload = {**legacy, **payload, "version": CONFIG_VERSION}
        try:
            return cls(**payload)
        except TrainConfigError as error:
            raise TrainConfigError(f"{where}: {error}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "config.json") -> "TrainConfig":
        try:
            payload = json.loads(text)
        except ValueError as error:
            raise TrainConfigError(f"{where}: not valid JSON (half-written or damaged?): {error}") from None
        return cls.from_dict(payload, where)

    # ------------------------------------------------------------------ options

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options a user gives (every field but the recorded ones)."""
        return tuple(f.name for f in fields(cls) if f.name not in RECORDED)

    def resume_differences(self, given: dict[str, Any]) -> list[str]:
        """Lines ``--activation: saved elu, given relu`` for each given option that a resume may not change."""
        changes = dict(given)
        if "targets" in changes and "loss_weights" not in changes:
            changes["loss_weights"] = None  # the saved weights may name a target not given: compare targets alone
        normalised = dataclasses.asdict(self.replace(**changes)) if given else {}
        lines = []
        for name in given:
            if name in RESUMABLE_CHANGES:
                continue
            saved, new = getattr(self, name), normalised[name]
            if name == "data":
                saved, new = tuple(map(_same_path, saved)), tuple(map(_same_path, new))
            elif name == "camera" and saved is not None and new is not None:
                saved, new = _same_path(saved), _same_path(new)
            if saved != new:
                lines.append(f"{flag(name)}: saved {_show(getattr(self, name))}, given {_show(normalised[name])}")
        return lines


# ---------------------------------------------------------------------- targets and loss weights

def parse_targets(targets: str | Sequence[str]) -> tuple[str, ...]:
    """``"steering,throttle"`` (or a sequence of names) as a tuple: a non-empty subset of steering, throttle,
    each once, steering first; ``TrainConfigError`` naming ``--targets`` otherwise.

    Example:
        >>> parse_targets("steering,throttle")
        ('steering', 'throttle')
    """
    given = targets
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",")]
    try:
        targets = tuple(targets)
    except TypeError:
        targets = None
    expected = (f"expected a comma-separated subset of {', '.join(TARGETS)}, each once, steering first "
                "(steering or steering,throttle)")
    if not targets or not all(isinstance(t, str) for t in targets):
        raise TrainConfigError(f"--targets: {expected}, got {given!r}")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise TrainConfigError(f"--targets: unknown target(s) {', '.join(map(repr, unknown))}; {expected}")
    if len(set(targets)) != len(targets) or targets[0] != "steering":
        raise TrainConfigError(f"--targets: {expected}, got {','.join(targets)}")
    return targets


def parse_loss_weights(text: str) -> dict[str, float]:
    """``"steering=1,throttle=0.5"`` as ``{"steering": 1.0, "throttle": 0.5}``; ``TrainConfigError`` naming
    ``--loss-weights`` for a malformed item, an unknown target or a weight that is not a finite number >= 0.
    (Whether each target is trained is checked by ``TrainConfig``, which knows ``targets``.)

    Example:
        >>> parse_loss_weights("throttle=0.5")
        {'throttle': 0.5}
    """
    if not isinstance(text, str) or not text.strip():
        raise TrainConfigError(f"--loss-weights: expected TARGET=WEIGHT[,TARGET=WEIGHT] (e.g. "
                               f"steering=1,throttle=0.5), got {text!r}")
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise TrainConfigError(f"--loss-weights: expected TARGET=WEIGHT (e.g. throttle=0.5), got {item.strip()!r}")
        if name in weights:
            raise TrainConfigError(f"--loss-weights: {name} is given twice")
        try:
            number = float(value)
        except ValueError:
            raise TrainConfigError(f"--loss-weights: {name}: expected a finite number >= 0, got {value.strip()!r}") \
                from None
        weights[name] = number
    _check_weights(weights)
    return weights


def _check_weights(weights: dict[str, Any]) -> None:
    for name, weight in weights.items():
        if name not in TARGETS:
            raise TrainConfigError(f"--loss-weights: unknown target {name!r}; expected some of {', '.join(TARGETS)}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) \
                or weight < 0:
            shown = f"{weight:g}" if isinstance(weight, numbers.Real) and not isinstance(weight, bool) else repr(weight)
            raise TrainConfigError(f"--loss-weights: {name}: expected a finite number >= 0, got {shown}")


def _loss_weights(given: Any, targets: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    if given is None:
        weights: dict[str, Any] = {}
    elif isinstance(given, str):
        weights = parse_loss_weights(given)
    elif isinstance(given, dict):
        weights = dict(given)
    else:
        try:
            weights = dict(given)
        except (TypeError, ValueError):
            raise TrainConfigError(f"--loss-weights: expected TARGET=WEIGHT pairs (e.g. steering=1,throttle=0.5), "
                                   f"got {given!r}") from None
    _check_weights(weights)
    untrained = [name for name in weights if name not in targets]
    if untrained:
        raise TrainConfigError(f"--loss-weights: {', '.join(untrained)} is not trained (--targets "
                               f"{','.join(targets)}); add it to --targets or drop its weight")
    result = tuple((name, float(weights.get(name, 1.0))) for name in targets)
    if not any(weight > 0 for _, weight in result):
        raise TrainConfigError(f"--loss-weights: every weight is 0 ({_show(result)}): nothing would be learned; "
                               "give at least one target a weight > 0")
    return result


# ---------------------------------------------------------------------- field checks

def _data(data: Any) -> tuple[str, ...]:
    if isinstance(data, (str, os.PathLike)):
        data = (data,)
    try:
        paths = tuple(os.fspath(p) for p in data)
    except TypeError:
        raise TrainConfigError(f"DATA: expected paths of driving logs, got {data!r}") from None
    return paths


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TrainConfigError(f"{flag(name)}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise TrainConfigError(f"{flag(name)}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _number(name: str, value: Any, *, minimum: float | None = None, above: float | None = None,
            below: float | None = None) -> float:
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum:g}")
    if above is not None:
        bounds.append(f"> {above:g}")
    if below is not None:
        bounds.append(f"< {below:g}")
    expected = f"expected a finite number {' and '.join(bounds)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TrainConfigError(f"{flag(name)}: {expected}, got {value!r}")
    value = float(value)
    if (not math.isfinite(value) or (minimum is not None and value < minimum) or (above is not None and value <= above)
            or (below is not None and value >= below)):
        raise TrainConfigError(f"{flag(name)}: {expected}, got {value:g}")
    return value


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TrainConfigError(f"{flag(name)}: expected true or false, got {value!r}")


def _choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise TrainConfigError(f"{flag(name)}: expected one of {', '.join(map(str, choices))}, got {value!r}")


def _crop(crop: Any) -> tuple[int, int] | None:
    from data_tools.preprocess import parse_crop

    try:
        parsed = parse_crop(list(crop) if isinstance(crop, tuple) else crop)
    except (ValueError, TypeError):
        raise TrainConfigError(f"--crop: expected TOP,BOTTOM (two integers, e.g. 60,25), got {crop!r}") from None
    if parsed is None:
        return None
    if any(v < 0 for v in parsed):
        raise TrainConfigError(f"--crop: expected TOP,BOTTOM rows >= 0, got {parsed[0]},{parsed[1]}")
    return parsed


def _same_path(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def _show(value: Any) -> str:
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return ",".join(f"{name}={weight:g}" for name, weight in value)  # loss weights
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "(none)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


__all__ = ["CACHE_MODES", "CONFIG_VERSION", "RESUMABLE_CHANGES", "SELECT_BY", "STRATEGIES", "TARGETS", "TrainConfig",
           "TrainConfigError", "flag", "parse_loss_weights", "parse_targets"]
