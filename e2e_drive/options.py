"""Declared options: a dataclass field that knows its flag, help, section, checks and history.

``TrainConfig`` declares each of its fields with ``option(...)``; the command line (``e2e_drive.cli.train``), the
resume rules, the legacy handling of old ``config.json`` files and the ``train()`` docstring are all read off the
declarations, so a new training flag is one field plus the code that uses it.

A check validates a value given in Python or read from JSON (``check(name, value)``, errors naming the flag) and
parses the text of a command-line flag (``check.parse(text)``, a ``ValueError`` argparse shows after the flag):

    >>> Integer(minimum=1)("epochs", 3.0)
    3
    >>> Number(above=0).parse("0")
    Traceback (most recent call last):
    ...
    ValueError: expected a number > 0, got '0'
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

# The sections of a declared config. A recipe option changes what is trained: a resume refuses a new value. A
# runtime option changes how the run reads, trains and talks, and may change on resume. A recorded field is what
# the data turned out to be, written when the run starts.
RECIPE, RUNTIME, RECORDED = "recipe", "runtime", "recorded"
SECTIONS = (RECIPE, RUNTIME, RECORDED)
NO_LEGACY = object()  # an option older config files do not need a value for: they take its default


class OptionError(ValueError):
    """A value of a declared option is invalid (the message starts with the option's flag)."""


@dataclass(frozen=True)
class Option:
    """How one config field is given, shown, resumed and read from older files.

    ``flag``: the command-line flag (``None``: ``--`` and the name with dashes; a positional's metavar such as
    ``DATA`` works too); ``cli``: whether the train command offers it as a flag (``False`` for what another flag or
    the positional arguments set). ``check``: validates and normalises a value. ``since``: the config version the
    field arrived in; ``legacy``: the value a config file older than ``since`` trained with (``NO_LEGACY``: its
    default). ``default_text``: what ``--help`` says the default is, where the default value alone says too little.
    ``negate``: a boolean that is on by default, given as ``--no-...`` to turn it off.
    """

    help: str
    section: str = RECIPE
    check: Callable[[str, Any], Any] | None = None
    flag: str | None = None
    metavar: str | None = None
    cli: bool = True
    since: int = 1
    legacy: Any = NO_LEGACY
    default_text: str | None = None
    negate: bool = False

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"section: expected one of {', '.join(SECTIONS)}, got {self.section!r}")


def option(default: Any, help: str, **declaration: Any) -> Any:
    """A dataclass field with ``default`` declared by an ``Option`` (``help``, and its other attributes)."""
    return dataclasses.field(default=default, metadata={"option": Option(help=help, **declaration)})


def declared(config_class: type) -> dict[str, tuple[dataclasses.Field, Option]]:
    """Every field of a declared dataclass with its ``Option``, in declaration order (subclass fields last)."""
    result = {}
    for f in dataclasses.fields(config_class):
        declaration = f.metadata.get("option")
        if declaration is None:
            raise TypeError(f"{config_class.__name__}.{f.name}: declared with a plain default; use option(...)")
        result[f.name] = (f, declaration)
    return result


def flag_of(name: str, declaration: Option | None = None) -> str:
    """The flag of option ``name`` (``batch_size`` -> ``--batch-size`` unless declared otherwise)."""
    if declaration is not None and declaration.flag:
        return declaration.flag
    return "--" + name.replace("_", "-")


def show(value: Any) -> str:
    """A value as a user types it: ``none``, ``true``, ``1e-3``, ``steering,throttle``, ``steering=1``."""
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return ",".join(f"{name}={weight:g}" for name, weight in value)  # (name, weight) pairs
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "(none)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- checks

class Check:
    """Validates a value of option ``name`` (``__call__``) and parses its command-line text (``parse``).

    ``optional``: ``None`` is a valid value (it means "derived", or "not recorded yet")."""

    optional = False
    choices: Sequence[Any] | None = None  # what argparse lists, for a choice

    def __call__(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        return self.validate(name, value)

    def validate(self, name: str, value: Any) -> Any:
        return value

    def parse(self, text: str) -> Any:
        return text


class _OrAuto:
    """Mixed in before a check: ``auto`` on the command line parses to ``None``, anything else as the check does."""

    def parse(self, text: str) -> Any:
        if text == "auto":
            return None
        try:
            return super().parse(text)
        except ValueError as error:
            raise ValueError(str(error).replace("expected ", "expected auto or ", 1)) from None


class Integer(Check):
    """An integer in [minimum, maximum]; ``maximum`` bounds what a typed size may cost (memory, time)."""

    def __init__(self, minimum: int, optional: bool = False, maximum: int | None = None) -> None:
        self.minimum, self.optional, self.maximum = minimum, optional, maximum

    def _inside(self, value: int) -> bool:
        return value >= self.minimum and (self.maximum is None or value <= self.maximum)

    def _expected(self) -> str:
        if self.maximum is None:
            return f"an integer >= {self.minimum}"
        return f"an integer in {self.minimum}..{self.maximum}"

    def validate(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            if not (isinstance(value, float) and value.is_integer()):
                raise OptionError(f"{name}: expected {self._expected()}, got {value!r}")
            value = int(value)
        if not self._inside(value):
            raise OptionError(f"{name}: expected {self._expected()}, got {value}")
        return int(value)

    def parse(self, text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer, got {text!r}") from None
        if not self._inside(value):
            raise ValueError(f"expected {self._expected()}, got {text!r}")
        return value


class IntegerOrAuto(_OrAuto, Integer):
    """An integer, or ``auto`` on the command line: ``None``, "choose it for this machine"."""


class Number(Check):
    """A finite number within the given bounds (``minimum`` and ``maximum`` inclusive, ``above`` and ``below``
    exclusive)."""

    def __init__(self, *, minimum: float | None = None, above: float | None = None, below: float | None = None,
                 maximum: float | None = None, optional: bool = False) -> None:
        self.minimum, self.above, self.below, self.maximum, self.optional = minimum, above, below, maximum, optional

    def _inside(self, value: float) -> bool:
        return (math.isfinite(value) and (self.minimum is None or value >= self.minimum)
                and (self.above is None or value > self.above) and (self.below is None or value < self.below)
                and (self.maximum is None or value <= self.maximum))

    def _bounds(self) -> str:
        bounds = [f">= {self.minimum:g}" if self.minimum is not None else "",
                  f"> {self.above:g}" if self.above is not None else "",
                  f"< {self.below:g}" if self.below is not None else "",
                  f"<= {self.maximum:g}" if self.maximum is not None else ""]
        return " and ".join(b for b in bounds if b)

    def validate(self, name: str, value: Any) -> float:
        expected = f"expected a finite number {self._bounds()}".rstrip()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise OptionError(f"{name}: {expected}, got {value!r}")
        if not self._inside(float(value)):
            raise OptionError(f"{name}: {expected}, got {float(value):g}")
        return float(value)

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {text!r}")
        if not self._inside(value):
            if self.maximum is not None:
                expected = f"a number {self._bounds()}"
            elif self.minimum is not None and self.below is not None:
                expected = f"a number in [{self.minimum:g}, {self.below:g})"
            elif self.above is not None:
                expected = f"a number > {self.above:g}"
            else:
                expected = f"a number >= {self.minimum:g}" if self.minimum is not None else f"a number < {self.below:g}"
            raise ValueError(f"expected {expected}, got {text!r}")
        return value


class NumberOrAuto(_OrAuto, Number):
    """A number, or ``auto`` on the command line: ``None``, "derive it" (given, and kept apart from not given)."""


class Choice(Check):
    """One of ``choices``: a sequence, or a function returning one (a registry read when first needed)."""

    def __init__(self, choices: Sequence[Any] | Callable[[], Sequence[Any]], optional: bool = False,
                 expected: str | None = None) -> None:
        self._choices, self.optional, self.expected = choices, optional, expected

    @property
    def choices(self) -> tuple[Any, ...]:
        return tuple(self._choices() if callable(self._choices) else self._choices)

    def validate(self, name: str, value: Any) -> Any:
        if value not in self.choices or isinstance(value, bool) != any(isinstance(c, bool) for c in self.choices):
            expected = self.expected or f"one of {', '.join(map(str, self.choices))}"
            raise OptionError(f"{name}: expected {expected}, got {value!r}")
        return value


class Boolean(Check):
    def validate(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise OptionError(f"{name}: expected true or false, got {value!r}")
        return value


class Path(Check):
    """A file or folder path (``what`` says which), as a ``str``."""

    def __init__(self, what: str, optional: bool = True) -> None:
        self.what, self.optional = what, optional

    def validate(self, name: str, value: Any) -> str:
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise OptionError(f"{name}: expected {self.what}, got {value!r}")
        return os.fspath(value)


class Parsed(Check):
    """A value checked by ``function(value)`` (which raises ``ValueError`` naming the flag, or returns the value
    normalised); its text parsed by the same function."""

    def __init__(self, function: Callable[[Any], Any], optional: bool = False) -> None:
        self.function, self.optional = function, optional

    def validate(self, name: str, value: Any) -> Any:
        return self.function(value)

    def parse(self, text: str) -> Any:
        try:
            return self.function(text)
        except ValueError as error:
            raise ValueError(str(error).split(": ", 1)[-1]) from None  # argparse names the flag itself


__all__ = ["Boolean", "Check", "Choice", "Integer", "IntegerOrAuto", "NO_LEGACY", "Number", "NumberOrAuto", "Option",
           "OptionError", "Parsed", "Path", "RECIPE", "RECORDED", "RUNTIME", "SECTIONS", "declared", "flag_of",
           "option", "show"]
