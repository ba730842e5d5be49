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


def _readme_commands() -> list[str]:
    """``e2e-drive ...`` command lines of README.md: code blocks (continuations joined) and inline snippets."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        block = block.replace("\\\n", " ")
        commands += [line.split("  #")[0].strip() for line in block.splitlines()]
    commands += re.findall(r"`(e2e-drive [^`\n]*)`", text)
    found = []
    for command in commands:
        command = re.sub(r"\[[^\]]*\]", "", command.split("e2e-drive ", 1)[-1] if "e2e-drive " in command else "")
        if command.strip() and "..." not in command and "|" not in command:
            found.append(command.strip())
    return found


README_COMMANDS = _readme_commands()


def test_the_readme_shows_every_command_and_only_real_ones():
    paths = _all_command_paths(build_parser())
    # Runnable commands: the leaves (``sim record``), not the groups (``sim``).
    commands = {p for p in paths if p and not any(q[: len(p)] == p and q != p for q in paths)}
    shown = set()
    for line in README_COMMANDS:
        words = line.split()
        path = next((p for p in sorted(commands, key=len, reverse=True) if tuple(words[: len(p)]) == p), None)
        assert path is not None or words[0].startswith("-"), f"README shows an unknown command: {line}"
        shown.add(path)
    assert commands <= shown, f"commands the README never shows: {sorted(commands - shown)}"


@pytest.mark.parametrize("command", README_COMMANDS)
def test_every_readme_example_parses(command):
    import shlex

    argv = shlex.split(command)
    if "--help" in argv:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(argv)
        assert exit_info.value.code == 0
        return
    args = build_parser().parse_args(argv)
    assert callable(args.handler)


def test_help_states_what_the_code_does(capsys):
    from e2e_drive.sim.track import INTERVENTION_FRACTION

    with pytest.raises(SystemExit):
        main(["sim", "drive", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{INTERVENTION_FRACTION:g} x the road width" in text and "More than 1 m" not in text
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Engine.IO 3 clients" in text and "Engine.IO 4 clients" in text and "same port" in text
    assert "gets a 400" not in text


def test_train_passes_only_the_flags_given():
    from e2e_drive.cli.train import train_options

    parser = build_parser()
    given = train_options(parser.parse_args(["train", "d", "--out", "r"]))
    assert given == {"verbose": 1}
    given = train_options(parser.parse_args(["train", "d", "--out", "r", "--epochs", "3", "--lr", "5e-4",
                                             "--no-augment", "--crop", "50,20", "--cache", "disk", "--overwrite",
                                             "--json"]))
    assert given == {"epochs": 3, "learning_rate": 5e-4, "augment": False, "crop": (50, 20), "cache": "disk",
                     "overwrite": True, "verbose": 2}


def test_json_is_one_object_and_logs_go_to_stderr(tmp_path, capsys):
    import json

    from tests.builders import make_udacity_log

    folder = make_udacity_log(tmp_path / "log")
    assert main(["data", "check", str(folder), "--plot", str(tmp_path / "h.png"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"] == 4
    assert f"histogram written to {tmp_path / 'h.png'}" in captured.err
    assert main(["data", "check", str(folder), "--plot", str(tmp_path / "h.png"), "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"] == 4 and "histogram written" not in captured.err
