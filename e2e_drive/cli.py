"""The one console script, ``e2e-drive``.

Each area of the package registers its own subcommands through a
``register(groups)`` function in its ``cli_*`` module (``groups["root"]`` for
top-level commands, ``groups["data"|"sim"|"bench"]`` for the shared groups), so this file
only wires them together. Handlers import TensorFlow lazily: ``--help`` stays
fast.

Conventions for every command: ``--json`` prints one JSON object on stdout,
logs and progress go to stderr, and a bad input ends with a one-line error and
exit code 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any, Callable, Sequence

# Modules that contribute subcommands; a module that is missing (an area not
# installed yet) is skipped so the rest of the CLI keeps working.
COMMAND_MODULES = (
    "e2e_drive.cli_layers",
    "e2e_drive.cli_data",
    "e2e_drive.cli_pipeline",
    "e2e_drive.cli_train",
    "e2e_drive.cli_sim",
    "deploy.cli_deploy",
)

# Command groups shared by several modules (``e2e-drive data check``, ``e2e-drive bench layers``).
GROUPS = {
    "data": "inspect driving logs: check, preview",
    "sim": "the embedded driving simulator: record, drive",
    "bench": "benchmarks; each prints ratios against a baseline measured in the same run",
}

EPILOG = """examples:
  e2e-drive demo --quick                       record, train and drive in the simulator
  e2e-drive data check ../shared/data/udacity_sim_a
  e2e-drive train ../shared/data/udacity_sim_a --out runs/udacity --epochs 10
  e2e-drive export runs/udacity/best.keras --format onnx --out pilotnet.onnx
"""


class CommandError(Exception):
    """An error the CLI reports as one line (exit code 2), without a traceback."""


def emit_json(payload: dict[str, Any]) -> None:
    """Print one JSON object on stdout (the ``--json`` contract)."""
    json.dump(payload, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")
    sys.stdout.flush()


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    """The result of a command: ``payload`` as JSON with ``--json``, else ``text`` for people."""
    if as_json:
        emit_json(payload)
    else:
        print(text)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def log(message: str) -> None:
    """Human-readable progress, on stderr so ``--json`` output stays clean."""
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    from e2e_drive import __version__

    parser = argparse.ArgumentParser(
        prog="e2e-drive",
        description="End-to-end steering models: data, training, simulator, export.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"e2e-drive {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    groups = {"root": commands}
    for name, help_text in GROUPS.items():
        group_parser = commands.add_parser(name, help=help_text, description=help_text)
        groups[name] = group_parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        groups[name].required = True
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return int(handler(args) or 0)
    except (CommandError, ValueError, FileNotFoundError, KeyboardInterrupt) as error:
        if isinstance(error, KeyboardInterrupt):
            log("interrupted")
            return 130
        if os.environ.get("E2E_DRIVE_DEBUG"):
            raise
        log(f"error: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
