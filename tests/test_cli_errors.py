"""One error handler: whatever the user gets wrong ends in one line ``error: <where>: <what>``, exit code 2.

Each case goes through the real CLI (``main([...])`` in-process, plus real subprocesses of ``python -m
e2e_drive``) and asserts the exact outcome; the error classes no command can be made to raise here (a full
disk, a corrupt zip inside a library) are checked on the handler with the exception the OS or library raises.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from e2e_drive.cli import describe_error, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("model") / "m.keras"
    tiny_model("elu").save(path)
    return str(path)


@pytest.fixture()
def log_folder(tmp_path, udacity_log):
    return str(udacity_log(tmp_path / "log"))


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- files ------------------------------------------------------------------------------------------

def test_output_path_that_is_a_directory(log_folder, tmp_path, capsys):
    (tmp_path / "plot.png").mkdir()
    code, out, err = run(["data", "check", log_folder, "--plot", str(tmp_path / "plot.png")], capsys)
    assert code == 2 and out == ""
    assert one_line(err) == f"error: {tmp_path / 'plot.png'}: is a directory, expected a file path"
    assert (tmp_path / "plot.png").is_dir() and os.listdir(tmp_path / "plot.png") == []


def test_output_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    code, _, err = run(["sim", "record", "--laps", "0.01", "--out", str(tmp_path / "a_file" / "rec")], capsys)
    assert code == 2
    assert one_line(err) == f"error: {tmp_path / 'a_file' / 'rec'}: a part of this path is a file, not a directory"
    assert (tmp_path / "a_file").read_text() == "x"


def test_plot_under_a_regular_file_names_the_path(log_folder, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    target = tmp_path / "a_file" / "h.png"
    code, _, err = run(["data", "check", log_folder, "--plot", str(target)], capsys)
    assert code == 2 and one_line(err).startswith(f"error: {target}: ")


def test_permission_denied(log_folder, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root: root bypasses file permissions, so no folder refuses a write "
                    "(the handler's message for EACCES is checked in test_os_errors_name_the_file_and_the_cause)")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run(["data", "check", log_folder, "--plot", str(folder / "h.png")], capsys)
    finally:
        folder.chmod(0o755)
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"error: {folder}") and "permission denied" in line


def test_missing_input_file(tmp_path, capsys):
    code, _, err = run(["sim", "drive", str(tmp_path / "absent.onnx")], capsys)
    assert code == 2 and one_line(err).startswith("error: ") and str(tmp_path / "absent.onnx") in err


def test_corrupt_keras_file(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run(["sim", "drive", str(bad), "--laps", "0.1"], capsys)
    assert code == 2
    assert one_line(err) == (f"error: {bad}: cannot load the Keras model: not a zip archive "
                             "(the file is damaged or is another kind of file)")


# --- the network ------------------------------------------------------------------------------------

def test_port_in_use(model_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run(["serve", model_path, "--port", str(port)], capsys)
    assert code == 2
    assert one_line(err) == (f"error: 127.0.0.1:{port}: address already in use "
                             "[another server listens there; stop it or choose another --port]")


def test_unknown_host(model_path, capsys):
    code, _, err = run(["serve", model_path, "--host", "no-such-host.invalid", "--port", str(free_port())], capsys)
    assert code == 2
    line = one_line(err)
    assert line.startswith("error: ") and "no-such-host.invalid" in line


# --- flags refused at parse time --------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["serve", "m.onnx", "--port", "99999"], "argument --port: expected a port in 1..65535, got '99999'"),
    (["serve", "m.onnx", "--port", "0"], "argument --port: expected a port in 1..65535, got '0'"),
    (["serve", "m.onnx", "--speed", "nan"], "argument --speed: expected a finite number, got 'nan'"),
    (["serve", "m.onnx", "--speed", "-1"], "argument --speed: expected a number >= 0, got '-1'"),
    (["train", "d", "--out", "r", "--lr", "nan"], "argument --lr: expected a finite number, got 'nan'"),
    (["train", "d", "--out", "r", "--lr", "0"], "argument --lr: expected a number > 0, got '0'"),
    (["train", "d", "--out", "r", "--epochs", "0"], "argument --epochs: expected an integer in 1..10000, got '0'"),
    (["train", "d", "--out", "r", "--batch-size", "100000"],
     "argument --batch-size: expected an integer in 1..8192, got '100000'"),
    (["train", "d", "--out", "r", "--seed", "4294967296"],
     "argument --seed: expected an integer in 0..4294967295, got '4294967296'"),
    (["train", "d", "--out", "r", "--workers", "1000"], "argument --workers: expected auto or an integer in 1..256, got '1000'"),
    (["train", "d", "--out", "r", "--batch-size", "2.5"], "argument --batch-size: expected an integer, got '2.5'"),
    (["train", "d", "--out", "r", "--val-fraction", "1"], "argument --val-fraction: expected a number in [0, 1), "
                                                            "got '1'"),
    (["train", "d", "--out", "r", "--dropout", "-0.1"], "argument --dropout: expected a number in [0, 1), "
                                                         "got '-0.1'"),
    (["train", "d", "--out", "r", "--crop", "60"], "argument --crop: expected TOP,BOTTOM (two integers, e.g. "
                                                   "60,25), got '60'"),
    (["sim", "drive", "m.onnx", "--laps", "inf"], "argument --laps: expected a finite number, got 'inf'"),
    (["train", "d", "--out", "r", "--speed", "0"], "argument --speed: expected a number > 0 and <= 30, got '0'"),
    (["sim", "record", "--out", "r", "--laps", "0"],
     "argument --laps: expected a number in (0, 100] (frames written to disk), got '0'"),
    (["sim", "record", "--out", "r", "--seed", "-1"], "argument --seed: expected an integer in 0..4294967295 (a seed), "
     "got '-1'"),
    (["bench", "pipeline", "d", "--batch-size", "1000000"],
     "argument --batch-size: expected an integer in 1..4096 (a batch held in memory), got '1000000'"),
    (["sim", "drive", "m.onnx", "--plot", "/no/such/folder/p.png"],
     "argument --plot: /no/such/folder/p.png: the folder /no/such/folder does not exist"),
    (["replay", "m.onnx", "d", "--video", "/no/such/folder/r.mp4"],
     "argument --video: /no/such/folder/r.mp4: the folder /no/such/folder does not exist"),
    (["data", "preview", "d", "--out", "g.png", "--n", "0"],
     "argument --n: expected an integer in 1..256 (the grid's limit), got '0'"),
    (["data", "preview", "d", "--out", "g.png", "--n", "100000"],
     "argument --n: expected an integer in 1..256 (the grid's limit), got '100000'"),
])
def test_numeric_flags_are_refused_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith(f"error: {message}")


# --- tracebacks only when asked ---------------------------------------------------------------------

def test_debug_and_verbose_show_the_traceback(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"junk")
    for extra, env in ((["--debug"], None), (["--verbose"], None), ([], "1")):
        if env:
            monkeypatch.setenv("E2E_DRIVE_DEBUG", env)
        code, _, err = run(["sim", "drive", str(bad), *extra], capsys)
        assert code == 2
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith(f"error: {bad}: cannot load")


def _python(*args, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "E2E_DRIVE_DEBUG")}
    return subprocess.Popen([sys.executable, "-m", "e2e_drive", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_subprocess_error_is_one_line_without_tracebacks_or_tensorflow_log_lines(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"junk")
    process = _python("sim", "drive", str(bad))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and out == ""
    # Nothing else on stderr: neither a traceback nor TensorFlow's C++ start-up lines (oneDNN, cuda drivers).
    assert err.splitlines() == [f"error: {bad}: cannot load the Keras model: not a zip archive "
                                "(the file is damaged or is another kind of file)"]


def test_subprocess_ctrl_c_is_interrupted_exit_130(model_path):
    process = _python("serve", model_path, "--port", str(free_port()))
    seen, deadline = "", time.monotonic() + 120
    try:
        while "drive server on" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stderr], [], [], 1.0)
            if ready:
                line = process.stderr.readline()
                if not line:
                    break
                seen += line
        assert "drive server on" in seen, seen
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err


# --- the handler on the exceptions the OS and libraries raise ---------------------------------------

def _raised(fn):
    try:
        fn()
    except BaseException as error:  # noqa: BLE001  (the exception object is the test input)
        return error
    raise AssertionError("expected an exception")


def test_parsers_errors_say_what_and_where():
    error = _raised(lambda: json.loads('{"epochs": 10,\n "lr": }'))
    assert describe_error(error) == "invalid JSON at line 2, column 8: Expecting value"
    error = _raised(lambda: list(csv.reader(io.StringIO('a,"b\n'), strict=True)))
    assert describe_error(error).startswith("malformed CSV: ")
    error = _raised(lambda: b"\xff\xfe steering".decode("utf-8"))
    assert describe_error(error).startswith("not UTF-8 text: byte 0 cannot be decoded (invalid start byte)")
    error = _raised(lambda: zipfile.ZipFile(io.BytesIO(b"not a zip")))
    assert describe_error(error) == ("not a valid zip archive (File is not a zip file) "
                                     "[the file is truncated or damaged; write it again]")
    assert describe_error(MemoryError()).startswith("out of memory: the input is too large")
    assert describe_error(ValueError("--crop: leaves 1 row\nsecond line")) == "--crop: leaves 1 row"


def test_os_errors_name_the_file_and_the_cause(tmp_path):
    error = _raised(lambda: open(tmp_path / "absent.csv"))
    assert describe_error(error) == f"{tmp_path / 'absent.csv'}: no such file or directory"
    error = _raised(lambda: open(tmp_path, "w"))
    assert describe_error(error) == f"{tmp_path}: is a directory, expected a file"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/a/best.keras")
    assert describe_error(full) == ("runs/a/best.keras: no space left on device "
                                    "[free some space or write somewhere else]")
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/srv/runs")
    assert describe_error(denied) == "/srv/runs: permission denied [check the permissions of the file and its folder]"
    error = _raised(lambda: os.mkdir(tmp_path))
    assert describe_error(error) == f"{tmp_path}: already exists"
    error = _raised(lambda: socket.getaddrinfo("no-such-host.invalid", 80))
    import argparse

    line = describe_error(error, argparse.Namespace(host="no-such-host.invalid", port=4567))
    assert line.startswith("--host no-such-host.invalid: cannot resolve the host name")
    assert describe_error(RuntimeError("a bug")) is None  # bugs keep their traceback


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs (root only); skipped with the reason where it cannot be mounted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up here: {result.stderr.strip() or result.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_export_keeps_the_previous_artifact(model_path, tiny_disk, capsys):
    import hashlib

    out = tiny_disk / "m.onnx"
    assert run(["export", model_path, "--format", "onnx", "--out", str(out), "--frames", "2"], capsys)[0] == 0
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    # Fill the disk to the last block: the next export cannot write its temporary file.
    filler = os.open(tiny_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(filler, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(filler)
    code, _, err = run(["export", model_path, "--format", "onnx", "--out", str(out), "--frames", "2", "--quiet"],
                       capsys)
    line = one_line(err)
    assert code == 2 and "no space left on device" in line and "m.onnx" in line
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "m.onnx"]  # no temporary file left
