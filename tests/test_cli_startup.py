"""The console script answers --help, --version and flag errors without loading TensorFlow or Keras, while
``import e2e_drive`` still registers every layer the moment Keras loads (a fresh interpreter for each check)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from e2e_drive.bench.cli import bench_cli, format_cli_report, loaded_modules
from tests.conftest import REPO


@pytest.mark.parametrize("command", [("--help",), ("train", "--help"), ("--version",), ("replay", "--help"),
                                     ("train", "data", "--epochs", "zero"), ("data", "check", "no/such/log")])
def test_answering_loads_no_tensorflow_keras_or_scipy(command):
    loads = loaded_modules(command)
    assert not {"tensorflow", "keras", "scipy", "matplotlib"} & set(loads), loads


def test_the_answers_are_the_real_ones():
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "e2e_drive", *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=120)

    help_text = run("train", "--help")
    assert help_text.returncode == 0 and "--select-by" in help_text.stdout and "--car" in help_text.stdout
    bad_flag = run("train", "data", "--epochs", "zero")
    assert bad_flag.returncode == 2 and "--epochs" in bad_flag.stderr
    missing = run("data", "check", "no/such/log")  # a problem data check reports (exit 1), not a crash
    assert missing.returncode == 1 and "no/such/log: no such file or folder" in missing.stdout


def test_import_e2e_drive_registers_the_layers_when_keras_loads():
    script = ("import sys, e2e_drive\n"
              "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
              "import tensorflow, keras\n"
              "names = ['custom_layers>' + n for n in ('Maxout', 'PReLU', 'ELU', 'RReLU', 'APL', 'ReferenceConv2D')]\n"
              "names.append('data_tools>FramePreprocess')\n"
              "print(all(keras.saving.get_registered_object(n) is not None for n in names))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr[-2000:]


def test_bench_cli_reports_each_command_with_what_it_loaded():
    report = bench_cli(repeats=1, commands=[("--version",)])
    row = report["commands"]["--version"]
    assert report["python_pass_seconds"] > 0 and row["seconds"] > report["python_pass_seconds"]
    assert "tensorflow" not in row["loads"]
    assert "e2e-drive --version" in format_cli_report(report)
