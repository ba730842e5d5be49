"""``TrainConfig``: every option of a training run, declared once, validated, and the schema of ``config.json``.

Each field is declared with ``e2e_drive.options.option``: its flag, help, section (recipe: changes what is trained,
refused on resume; runtime: how the run reads, trains and talks, free to change on resume; recorded: what the data
turned out to be), the config version it arrived in and the value older runs trained with. The command line
(``e2e_drive.cli.train``), the resume rules, the reading of older files and ``train()``'s docstring come from
these declarations.

``e2e_drive.train.train`` builds one from the options it is given, records the data it read (``frame_shape``,
``num_train``, ``num_val``) and writes it to ``config.json``. A resumed run reads it back: options not given come
from it, and recipe options are refused (``resume_differences``). An older file still loads, with what that run
trained with for the fields it lacks (a resumed run trains on as it began), and is written back as the current
version. Every validation error names the command-line flag, e.g. ``--lr: expected a finite number > 0, got nan``.

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

from data_tools.frame_cache import CACHE_MODES
from data_tools.log import TARGETS
from e2e_drive.options import (NO_LEGACY, RECIPE, RECORDED, RUNTIME, Boolean, Check, Choice, Integer, Number,
                               IntegerOrAuto, NumberOrAuto, OptionError, Parsed, Path, declared, flag_of, option, show)

CONFIG_VERSION = 7
STRATEGIES = ("auto", "mirrored", "multiworker")
SELECT_BY = ("last", "val_loss", "autonomy")
LR_SCHEDULES = ("cosine", "constant")


class TrainConfigError(OptionError):
    """An option of a training run is invalid, or a saved config.json cannot be used."""


def _activations() -> tuple[str, ...]:
    from e2e_drive.models import ACTIVATIONS  # light: models imports Keras only inside functions

    return ACTIVATIONS


def _convs() -> tuple[str, ...]:
    from e2e_drive.models import CONVS

    return CONVS


def _cars() -> tuple[str, ...]:
    from e2e_drive.replay.profiles import PROFILES  # it imports the simulator (OpenCV, SciPy), not Keras

    return tuple(PROFILES)


class _Augment(Check):
    def validate(self, name: str, value: Any) -> bool | str:
        if not isinstance(value, (bool, str)):
            raise OptionError(f"{name}: expected true, false or a transform's repr, got {value!r}")
        return value


class _FrameShape(Check):
    optional = True

    def validate(self, name: str, value: Any) -> tuple[int, int, int]:
        shape = tuple(Integer(minimum=1)(name, d) for d in value)
        if len(shape) != 3 or shape[2] != 3:
            raise OptionError(f"{name}: expected [H, W, 3], got {list(value)}")
        return shape


class _Version(Check):
    def validate(self, name: str, value: Any) -> int:
        if value != CONFIG_VERSION or isinstance(value, bool):
            raise OptionError(f"{name}: this e2e-drive reads config versions "
                              f"{', '.join(map(str, range(1, CONFIG_VERSION + 1)))} (and writes {CONFIG_VERSION}), "
                              f"got {value!r}")
        return value


@dataclass(frozen=True)
class TrainConfig:
    """The options of a training run, each declared once with its flag, help, section and history (``option``).

    ``frame_shape``, ``num_train`` and ``num_val`` are recorded once the data is read (``None`` before).
    ``augment`` is ``True`` (``default_augmentation()``), ``False``, or the ``repr`` of a custom transform.
    ``loss_weights``: the weight of each target's MSE in the loss, as ``(target, weight)`` pairs in ``targets``
    order; given as a mapping, ``"steering=1,throttle=0.5"`` or pairs, a target not named weighs 1.0
    (``weights`` gives them as a dict).

    A subclass adds options the same way (``@dataclass(frozen=True)`` and fields declared with ``option``): they
    reach the command line (``e2e_drive.cli.train.add_config_options``), ``config.json`` and the resume checks.
    """

    data: tuple[str, ...] = option((), "Udacity folders/CSVs, tubs or recordings", flag="DATA", cli=False,
                                   check=Parsed(lambda data: _data(data)))
    epochs: int = option(10, "total epochs; a resumed run continues up to this number", section=RUNTIME,
                         check=Integer(minimum=1, maximum=10_000))
    batch_size: int = option(64, "samples per step (per worker under --strategy multiworker)",
                             check=Integer(minimum=1, maximum=8192))
    learning_rate: float = option(1e-3, "Adam learning rate", flag="--lr", check=Number(above=0.0))
    lr_schedule: str = option("cosine", "cosine: decay --lr to 0 over the --epochs (a resumed run with more epochs "
                              "follows the stretched curve from where it stopped); constant: --lr throughout",
                              check=Choice(LR_SCHEDULES), since=6, legacy="constant")
    activation: str = option("elu", "activation layers", check=Choice(_activations))
    conv: str = option("keras", "convolution layers", check=Choice(_convs))
    dropout: float = option(0.0, "dropout rate after flatten and dense layers, in [0, 1)",
                            check=Number(minimum=0.0, below=1.0))
    targets: tuple[str, ...] = option(("steering",), "what the model learns: steering, or steering,throttle (a "
                                      "second head on the logs' throttle)", metavar="steering[,throttle]",
                                      check=Parsed(lambda targets: parse_targets(targets)), since=2)
    loss_weights: tuple[tuple[str, float], ...] | None = option(
        None, "weight of each target's MSE in the loss, e.g. steering=1,throttle=0.5", metavar="TARGET=W[,...]",
        check=Parsed(lambda text: parse_loss_weights(text) if isinstance(text, str) else text, optional=True),
        since=2, default_text="1 each")
    augment: bool | str = option(True, "augment the training frames (the recipe of data_tools.augment); "
                                 "--no-augment trains on the centre frames as they are",
                                 flag="--no-augment", negate=True, check=_Augment())
    balance: bool = option(False, "flatten the steering histogram", check=Boolean())
    seed: int = option(0, "the one seed of the run: weights, order and augmentation",
                       check=Integer(minimum=0, maximum=2**32 - 1))
    val_fraction: float = option(0.2, "last fraction of each recording held out, time-ordered, in [0, 1)",
                                 check=Number(minimum=0.0, below=1.0))
    crop: tuple[int, int] | None = option(None, "rows cut from the frame", metavar="TOP,BOTTOM",
                                          check=Parsed(lambda crop: _crop(crop), optional=True),
                                          default_text="sky and bonnet, 60,25 for 160-row frames; a camera "
                                          "without a bonnet in view (--car donkey) keeps the bottom rows")
    smooth_steering: float = option(0.0, "Gaussian-smooth the labels over SIGMA frames; 0: off", metavar="SIGMA",
                                    check=Number(minimum=0.0))
    smooth_seconds: float | None = option(
        None, "Gaussian-smooth the labels over SECONDS of the time stamps; 0: off", metavar="SECONDS",
        check=Number(minimum=0.0, optional=True), since=3, legacy=0.0,
        default_text="only recordings that look keyboard-driven, over 0.4 s")
    side_correction: float | None = option(
        0.2, "steering added for the left camera, subtracted for the right; auto: derived from --car's geometry and "
        "the log's speed", metavar="X|auto", check=NumberOrAuto(minimum=0.0, below=1.0, optional=True), since=3,
        legacy=0.2)
    viewpoint_shift: float | None = option(
        None, "PilotNet's shift-and-rotate augmentation: frames seen from up to METRES to either side (and 0.1 rad "
        "turned) through --car's camera, labelled with its pure pursuit back to the path; 0: off", metavar="METRES",
        check=Number(minimum=0.0, optional=True), since=4, legacy=0.0,
        default_text="half of --car's intervention offset, 1.35 m for udacity")
    epoch_samples: int | None = option(
        None, "samples per epoch: a smaller log serves its rows several times, freshly augmented; 0: each row once",
        metavar="N", check=Integer(minimum=0, optional=True, maximum=10_000_000), since=4, legacy=0,
        default_text="12000, at most 8 passes over the rows")
    car: str | None = option(
        None, "car and camera profile: wheelbase, camera, road width for viewpoint shifts, derived corrections and "
        "replay", check=Choice(_cars, optional=True), since=3, legacy="udacity",
        default_text="from the data: sim for `e2e-drive sim record` folders, donkey for donkeycar tubs, else udacity")
    camera: str | None = option(
        None, "camera calibration (e2e-drive calibrate) for the viewpoint shifts, the derived side correction and the "
        "closed-loop checks", metavar="CAMERA.json", check=Path("a camera calibration JSON file"), since=5,
        default_text="--car's camera")
    speed: float | None = option(
        None, "metres per second, for logs without a speed column (donkeycar tubs): the closed-loop check and "
        "--select-by autonomy replay at it, as e2e-drive replay --speed, and the recipe's steering corrections use "
        "it; given, it replaces a speed column", metavar="M/S", check=Number(above=0.0, maximum=30.0, optional=True), since=6,
        default_text="the logs' speed column")
    select_by: str = option(
        "last", "which epoch becomes best.keras: the last (no early stopping), the lowest val loss, or the most "
        "replay autonomy on the validation span (needs time stamps and speed; minutes of validation driving; for "
        "recordings of `e2e-drive sim record` the simulator drives their tracks instead); --early-stopping applies "
        "to the last two", check=Choice(SELECT_BY), since=3, legacy="val_loss")
    early_stopping: int = option(5, "with --select-by val_loss or autonomy: stop after PATIENCE epochs without "
                                 "improvement; 0 disables", metavar="PATIENCE",
                                 check=Integer(minimum=0, maximum=10_000))
    skip_bad: bool = option(False, "train on the rows that read well, leaving out bad ones (missing, empty or "
                            "damaged images, NUL-filled or malformed lines, values out of range); refused when more "
                            "than --max-bad of the rows are bad", check=Boolean(), since=7, legacy=False)
    max_bad: float = option(0.05, "with --skip-bad: the largest fraction of bad rows a log may have",
                            metavar="FRACTION", check=Number(minimum=0.0, below=1.0), since=7, legacy=0.05)
    # The strategy decides how batches split over workers (batch_size is per worker under multiworker): recipe.
    strategy: str = option("auto", "auto (mirrored when several GPUs), mirrored, or multiworker (TF_CONFIG)",
                           check=Choice(STRATEGIES))
    mixed_precision: bool = option(False, "mixed_float16 on GPU, mixed_bfloat16 on CPU; the output layer stays "
                                   "float32", check=Boolean())
    workers: int | None = option(None, "batch loader workers; auto: 1 on CPUs alone (the step needs the cores "
                                 "more than the batches do), one per core but one beside a GPU (at most 8)",
                                 metavar="N|auto", section=RUNTIME,
                                 check=IntegerOrAuto(minimum=1, maximum=256, optional=True), default_text="auto")
    worker_processes: bool = option(False, "run the --workers as processes (batches through shared memory) instead "
                                    "of threads", section=RUNTIME, check=Boolean())
    cache: str = option("auto", "decoded-frame cache: memory, disk (memory-mapped under --cache-dir), none, or auto "
                        "(memory when the frames fit, else disk)", section=RUNTIME, check=Choice(CACHE_MODES))
    cache_dir: str | None = option(None, "folder of the disk cache", metavar="DIR", section=RUNTIME,
                                   check=Path("a folder path"), default_text="$XDG_CACHE_HOME/e2e-drive/frames")
    verbose: int = option(1, "Keras' progress: 0 silent, 1 progress bars, 2 one line per epoch (the CLI: --quiet, "
                          "--json)", section=RUNTIME, cli=False, check=Choice((0, 1, 2), expected="0, 1 or 2"))
    frame_shape: tuple[int, int, int] | None = option(None, "the frames' [H, W, 3]", section=RECORDED, cli=False,
                                                      flag="config.json frame_shape", check=_FrameShape())
    num_train: int | None = option(None, "training rows", section=RECORDED, cli=False, flag="config.json num_train",
                                   check=Integer(minimum=0, optional=True))
    num_val: int | None = option(None, "validation rows", section=RECORDED, cli=False, flag="config.json num_val",
                                 check=Integer(minimum=0, optional=True))
    version: int = option(CONFIG_VERSION, "the config.json schema version", section=RECORDED, cli=False,
                          flag="config.json version", check=_Version())

    def __post_init__(self) -> None:
        if self.cache is None:
            object.__setattr__(self, "cache", "none")
        try:
            for name, (_, declaration) in declared(type(self)).items():
                if declaration.check is not None:
                    # frozen: normalise in place
                    object.__setattr__(self, name, declaration.check(flag_of(name, declaration), getattr(self, name)))
            if self.smooth_seconds and self.smooth_steering:
                raise TrainConfigError(f"{flag('smooth_seconds')} and {flag('smooth_steering')}: choose one "
                                       "(seconds of the time stamps, or frames)")
            object.__setattr__(self, "loss_weights", _loss_weights(self.loss_weights, self.targets))
        except TrainConfigError:
            raise
        except OptionError as error:
            raise TrainConfigError(str(error)) from None

    @property
    def weights(self) -> dict[str, float]:
        """``loss_weights`` as ``{target: weight}`` (what ``keras.Model.compile(loss_weights=...)`` takes)."""
        return dict(self.loss_weights)

    # ------------------------------------------------------------------ the declarations

    @classmethod
    def names(cls, section: str) -> tuple[str, ...]:
        """The fields of one section (``RECIPE``, ``RUNTIME`` or ``RECORDED``), in declaration order."""
        return tuple(name for name, (_, d) in declared(cls).items() if d.section == section)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options a user gives (every field but the recorded ones)."""
        return cls.names(RECIPE) + cls.names(RUNTIME)

    @classmethod
    def resumable(cls) -> tuple[str, ...]:
        """What may change when a run is resumed: the runtime options (how it reads, trains and talks)."""
        return cls.names(RUNTIME)

    @classmethod
    def fields_since(cls) -> dict[int, tuple[str, ...]]:
        """Each config version this code reads, with the fields it introduced."""
        declarations = declared(cls)
        return {version: tuple(n for n, (_, d) in declarations.items() if d.since == version)
                for version in range(1, CONFIG_VERSION + 1)}

    @classmethod
    def legacy(cls, version: int) -> dict[str, Any]:
        """What a run with a config.json of ``version`` trained with, for the fields that version lacks."""
        return {name: d.legacy for name, (_, d) in declared(cls).items()
                if d.since > version and d.legacy is not NO_LEGACY}

    @classmethod
    def describe_options(cls) -> str:
        """One line per option: name, default and help (the table of ``train()``'s docstring)."""
        lines = []
        for name, (f, d) in declared(cls).items():
            if d.section == RECORDED:
                continue
            default = d.default_text if d.default_text else show(f.default)
            lines.append(f"{name} ({flag_of(name, d)}; {d.section}; default {default}): {d.help}.")
        return "\n".join(lines)

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
        since = cls.fields_since()
        if version in since and version != CONFIG_VERSION and not isinstance(version, bool):
            newer = [name for v, names in since.items() if v > version for name in names if name in payload]
            if newer:
                raise TrainConfigError(f"{where}: version {version} has no field(s) {', '.join(newer)} "
                                       "(a damaged or hand-edited file?)")
            # An older run: new fields take their defaults, except those whose declaration says what that run
            # trained with (its legacy value), so that it resumes as it began.
            payload = {**cls.legacy(version), **payload, "version": CONFIG_VERSION}
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

    def resume_differences(self, given: dict[str, Any]) -> list[str]:
        """Lines ``--activation: saved elu, given relu`` for each given option that a resume may not change."""
        changes = dict(given)
        if "targets" in changes and "loss_weights" not in changes:
            changes["loss_weights"] = None  # the saved weights may name a target not given: compare targets alone
        normalised = dataclasses.asdict(self.replace(**changes)) if given else {}
        resumable = self.resumable()
        lines = []
        for name in given:
            if name in resumable:
                continue
            saved, new = getattr(self, name), normalised[name]
            if name == "data":
                saved, new = tuple(map(_same_path, saved)), tuple(map(_same_path, new))
            elif isinstance(declared(type(self))[name][1].check, Path) and saved is not None and new is not None:
                saved, new = _same_path(saved), _same_path(new)
            if saved != new:
                lines.append(f"{flag(name)}: saved {show(getattr(self, name))}, given {show(normalised[name])}")
        return lines


def flag(name: str) -> str:
    """The command-line flag of option ``name`` (``learning_rate`` -> ``--lr``, ``batch_size`` -> ``--batch-size``)."""
    declaration = declared(TrainConfig).get(name)
    return flag_of(name, declaration[1] if declaration else None)


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
        raise TrainConfigError(f"--loss-weights: every weight is 0 ({show(result)}): nothing would be learned; "
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




__all__ = ["CACHE_MODES", "CONFIG_VERSION", "LR_SCHEDULES", "SELECT_BY", "STRATEGIES", "TARGETS", "TrainConfig",
           "TrainConfigError", "flag", "parse_loss_weights", "parse_targets"]
