"""The console script: every command answers --help, errors are one line."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from e2e_drive.cli import build_parser, main


def _all_command_paths(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _all_command_paths(sub, prefix + (name,))
    return paths


COMMAND_PATHS = _all_command_paths(build_parser())


def test_console_script_help_runs_in_a_fresh_process():
    result = subprocess.run([sys.executable, "-m", "e2e_drive", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "e2e-drive" in result.stdout and "COMMAND" in result.stdout


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "e2e-drive")
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(list(path) + ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: e2e-drive"), out[:200]


def test_missing_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err
