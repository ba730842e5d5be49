"""``e2e-drive bench cli``: how long the console script takes to answer, against ``python -c pass``.

Each command is a fresh interpreter (``python -m e2e_drive ...``, what the ``e2e-drive`` script runs), timed
wall clock from start to exit, interleaved with the baseline so that both see the same machine; the median of
``repeats`` runs is reported, with the modules a run loaded that make start-up slow.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

COMMANDS: tuple[tuple[str, ...], ...] = (("--help",), ("--version",), ("train", "--help"),
                                         ("data", "check", "no/such/log"))
# Modules that take most of a second each to import: none of them should load to answer these commands.
HEAVY = ("tensorflow", "keras", "cv2", "scipy", "matplotlib", "onnxruntime", "tf2onnx")

_PROBE = """
import runpy, sys
sys.argv = ["e2e-drive", *sys.argv[1:]]
try:
    runpy.run_module("e2e_drive", run_name="__main__", alter_sys=True)
finally:
    sys.stderr.write("\\nLOADED " + " ".join(m for m in {heavy!r} if m in sys.modules) + "\\n")
"""


def _run(argv: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def loaded_modules(command: Sequence[str]) -> list[str]:
    """The heavy modules (``HEAVY``) that answering ``command`` loads, from a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *command], capture_output=True,
                            text=True, check=False)
    line = next((line for line in reversed(result.stderr.splitlines()) if line.startswith("LOADED")), "LOADED")
    return line.split()[1:]


def bench_cli(repeats: int = 5, commands: Sequence[Sequence[str]] = COMMANDS) -> dict[str, Any]:
    """Median seconds of each command next to ``python -c pass`` measured in the same run."""
    if repeats < 1:
        raise ValueError(f"Expected repeats >= 1. Received: repeats={repeats}")
    baseline, keras_import, timings = [], [], {" ".join(c): [] for c in commands}
    for _ in range(repeats):
        baseline.append(_run([sys.executable, "-c", "pass"]))
        keras_import.append(_run([sys.executable, "-c", "import keras"]))  # what every command paid before
        for command in commands:
            timings[" ".join(command)].append(_run([sys.executable, "-m", "e2e_drive", *command]))
    floor = statistics.median(baseline)
    rows = {name: {"seconds": statistics.median(values), "x_python": statistics.median(values) / floor,
                   "loads": loaded_modules(name.split())}
            for name, values in timings.items()}
    return {"repeats": repeats, "python_pass_seconds": floor, "import_keras_seconds": statistics.median(keras_import),
            "commands": rows}


def format_cli_report(report: dict[str, Any]) -> str:
    lines = [f"console script start-up (median of {report['repeats']}; python -c pass "
             f"{report['python_pass_seconds'] * 1000:.0f} ms; python -c 'import keras' "
             f"{report['import_keras_seconds'] * 1000:.0f} ms, what every command paid before)"]
    for name, row in report["commands"].items():
        loads = ", ".join(row["loads"]) or "none of " + "/".join(HEAVY[:3])
        lines.append(f"  e2e-drive {name:<24} {row['seconds'] * 1000:6.0f} ms  {row['x_python']:5.1f}x python  "
                     f"loads: {loads}")
    return "\n".join(lines)
