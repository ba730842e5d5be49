"""The one console script, ``e2e-drive``.

Each command module ``e2e_drive.cli.<name>`` (listed in ``COMMAND_MODULES``; none is skipped silently)
defines ``register(commands, common)``: ``commands`` is the root ``add_subparsers()`` action and ``common``
the parent parser holding ``--json``, ``--verbose``, ``--quiet`` and ``--debug``, which every leaf parser
takes through ``parents=[common]``. Handlers import TensorFlow lazily, so ``--help`` stays fast.

Conventions for every command: ``--json`` prints exactly one JSON object on stdout (``output.emit``); logs
and progress go to stderr; anything the user can cause (a missing file, a bad value, a busy port) ends
with one line ``error: <file or flag>: <what is wrong>`` and exit code 2; the traceback only with
``--debug``/``--verbose`` or ``E2E_DRIVE_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import csv
import errno
import importlib
import json
import logging
import os
import socket
import sys
import traceback
import zipfile
from typing import Callable, Sequence

from data_tools.errors import first_line
from e2e_drive.heap_padding import pad_the_heap

COMMAND_MODULES = ("data", "train", "sim", "deploy", "replay", "bench", "doctor")

EPILOG = """examples:
  e2e-drive demo --quick                       record, train and drive in the simulator
  e2e-drive data check ../shared/data/udacity_sim_a
  e2e-drive train ../shared/data/udacity_sim_a --out runs/udacity --epochs 10
  e2e-drive export runs/udacity/best.keras --format onnx --out pilotnet.onnx
  e2e-drive doctor                             what is installed and which exports work here
"""

log = logging.getLogger(__name__)


def common_parser() -> argparse.ArgumentParser:
    """The flags every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout (logs go to stderr)")
    verbosity = common.add_mutually_exclusive_group()
    verbosity.add_argument("--verbose", action="store_true",
                           help="debug logging, TensorFlow's own log lines, tracebacks on errors")
    verbosity.add_argument("--quiet", action="store_true", help="warnings and errors only")
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return common


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
    common = common_parser()
    for name in COMMAND_MODULES:
        importlib.import_module(f"e2e_drive.cli.{name}").register(commands, common)
    return parser


def group(commands, name: str, help_text: str) -> argparse._SubParsersAction:
    """The sub-commands of group ``name`` (``data``, ``sim``, ``bench``), created by whichever module asks first."""
    parser = commands.choices.get(name)
    if parser is None:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        sub.required = True
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


GROUPS = {
    "data": "inspect driving logs: check, preview",
    "sim": "the embedded driving simulator: record, drive",
    "bench": "benchmarks; each prints ratios against a baseline measured in the same run",
}


def add_command(commands, name: str, *, help: str, description: str, epilog: str,
                common: argparse.ArgumentParser, handler: Callable[[argparse.Namespace], int | None],
                group_name: str | None = None) -> argparse.ArgumentParser:
    """A leaf command: help, description, example epilog, the common flags and its handler."""
    where = group(commands, group_name, GROUPS[group_name]) if group_name else commands
    parser = where.add_parser(name, help=help, description=description, epilog=epilog, parents=[common],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=handler)
    return parser


# --- logging -------------------------------------------------------------------------------------------

class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (pytest's capsys and ``redirect_stderr`` replace it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _Formatter(logging.Formatter):
    def __init__(self, detailed: bool) -> None:
        super().__init__()
        self.detailed = detailed

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if self.detailed:
            message = f"{record.levelname.lower()} {record.name}: {message}"
        elif record.levelno >= logging.WARNING:
            message = f"{record.levelname.lower()}: {message}"
        if record.exc_info and self.detailed:
            message += "\n" + self.formatException(record.exc_info)
        return message


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log records of every library module to stderr: INFO by default, WARNING with --quiet, DEBUG with --verbose."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(detailed=verbose))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    if not verbose:
        # Third-party chatter at INFO (matplotlib font cache, socket.io per-request lines) is not ours to show.
        for name in ("matplotlib", "PIL", "socketio", "engineio", "urllib3", "h5py", "absl", "tensorflow",
                     "tf2onnx"):
            logging.getLogger(name).setLevel(logging.WARNING)


# --- errors --------------------------------------------------------------------------------------------

def _os_error(error: OSError, args: argparse.Namespace | None) -> str:
    """``<file>: <what is wrong> [hint]`` for an OSError from the filesystem or the network."""
    host, port = getattr(args, "host", None), getattr(args, "port", None)
    if isinstance(error, socket.gaierror):
        name = f"--host {host}" if host else "host name"
        return f"{name}: cannot resolve the host name ({error.strerror or first_line(error, limit=None)}) " \
               "[check the spelling, or use an address such as 127.0.0.1 or 0.0.0.0]"
    if error.errno == errno.EADDRINUSE:
        where = f"{host}:{port}" if host is not None and port is not None else "address"
        return f"{where}: address already in use [another server listens there; stop it or choose another --port]"
    if error.errno == errno.EADDRNOTAVAIL:
        where = f"--host {host}" if host else "address"
        return f"{where}: cannot listen on this address: it is not one of this machine's [use 127.0.0.1 or 0.0.0.0]"
    if error.errno in (errno.EACCES, errno.EPERM) and not error.filename and port is not None:
        return f"--port {port}: permission denied [ports below 1024 need privileges; choose another --port]"
    if error.errno is None or not error.filename:
        # Library code raised it with a message that already names the file (``FileNotFoundError(f"{path}: ...")``).
        message = error.strerror if error.errno is not None and error.strerror else first_line(error, limit=None)
        return message or type(error).__name__
    where = os.fspath(error.filename)
    if error.filename2:
        where += f" -> {os.fspath(error.filename2)}"
    what = {
        errno.ENOENT: "no such file or directory",
        errno.EISDIR: "is a directory, expected a file",
        errno.ENOTDIR: "a part of this path is a file, not a directory",
        errno.EEXIST: "already exists",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.ENAMETOOLONG: "file name too long",
    }.get(error.errno, (error.strerror or type(error).__name__).lower())
    hint = {
        errno.ENOSPC: " [free some space or write somewhere else]",
        errno.EACCES: " [check the permissions of the file and its folder]",
        errno.EROFS: " [write somewhere else]",
    }.get(error.errno, "")
    return f"{where}: {what}{hint}"


def describe_error(error: BaseException, args: argparse.Namespace | None = None) -> str | None:
    """The one-line message for an error the user can cause; ``None`` for a bug (traceback it)."""
    if isinstance(error, json.JSONDecodeError):  # before ValueError: it is one
        return f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
    if isinstance(error, UnicodeDecodeError):  # before ValueError: it is one
        return f"not UTF-8 text: byte {error.start} cannot be decoded ({error.reason}) " \
               "[is this a binary file, or text in another encoding?]"
    if isinstance(error, zipfile.BadZipFile):
        return f"not a valid zip archive ({first_line(error, limit=None)}) [the file is truncated or damaged; write it again]"
    if isinstance(error, csv.Error):
        return f"malformed CSV: {first_line(error, limit=None)}"
    if isinstance(error, MemoryError):
        return "out of memory: the input is too large for this machine [use a smaller --batch-size, or --cache disk]"
    if isinstance(error, OSError):
        return _os_error(error, args)
    if isinstance(error, ValueError):  # DataError included: its message names the file and row
        return first_line(error, limit=None) or type(error).__name__
    return None


def _wants_traceback(args: argparse.Namespace | None) -> bool:
    return bool(os.environ.get("E2E_DRIVE_DEBUG", "") not in ("", "0")
                or getattr(args, "debug", False) or getattr(args, "verbose", False))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``e2e-drive`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    pad_the_heap()  # before any command starts TensorFlow's threads: each would get an arena of its own
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        sys.stdout.flush()
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as error:  # noqa: BLE001  (sorted below: user errors get one line, bugs a traceback)
        message = describe_error(error, args)
        if message is None:
            raise
        if _wants_traceback(args):
            traceback.print_exc(file=sys.stderr)
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
