"""``check``: what is in a driving log, and what is wrong with it."""

from __future__ import annotations

import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from data_tools.errors import DataError
from data_tools.frames import read_frame
from data_tools.log import DrivingLog
from data_tools.read import read_log
from data_tools.udacity import check_on_error

MAX_LISTED = 50
MAX_ODD_FRAMES = 5
NEAR_ZERO = 0.01

# Reader messages sorted into the report's kinds, by the words the readers use.
KINDS = (
    ("damaged_lines", ("NUL bytes",)),
    ("empty_images", ("image is empty",)),
    ("missing_images", ("not found", "is missing", "path is empty")),
    ("out_of_range", ("outside [-1, 1]",)),
    ("non_finite", ("not finite", "not a finite number")),
    ("non_numeric", ("not a number",)),
    ("malformed", ("columns", "JSON", "missing key", "not a JSON object", "quote", "CSV", "is not a")),
)


@dataclass
class CheckReport:
    """The result of ``check``; ``ok`` is False when any problem was found (skipped rows excepted)."""

    paths: list[str]
    rows: int = 0
    cameras: list[str] = field(default_factory=list)
    images_checked: int = 0
    image_sizes: dict[str, int] = field(default_factory=dict)
    unreadable_images: int = 0
    missing_images: int = 0
    empty_images: int = 0
    damaged_lines: int = 0
    recordings: int = 0
    missing_timestamps: int = 0
    repeated_timestamps: int = 0
    backward_timestamps: int = 0
    out_of_range: int = 0
    non_finite: int = 0
    non_numeric: int = 0
    malformed: int = 0
    skipped_rows: int = 0
    deleted_records: int = 0
    steering_mean: float = float("nan")
    steering_std: float = float("nan")
    steering_min: float = float("nan")
    steering_max: float = float("nan")
    near_zero_fraction: float = float("nan")
    histogram_edges: list[float] = field(default_factory=list)
    histogram_counts: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def to_dict(self) -> dict:
        """Plain JSON-ready values; statistics of an empty log are ``None`` (JSON has no NaN)."""
        values = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}
        return {**values, "ok": self.ok}

    def add_problem(self, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(message)

    def format(self) -> str:
        lines = [
            f"log:            {', '.join(self.paths)}",
            f"rows:           {self.rows}  (cameras: {', '.join(self.cameras) or '-'}; "
            f"recording sessions: {self.recordings})",
            f"images:         {self.images_checked} checked, sizes "
            + (", ".join(f"{size}: {n}" for size, n in self.image_sizes.items()) or "-"),
            f"bad images:     {self.missing_images} missing, {self.empty_images} empty (0 bytes), "
            f"{self.unreadable_images} unreadable",
            f"bad values:     {self.non_numeric} non-numeric, {self.non_finite} non-finite, "
            f"{self.out_of_range} out of range, {self.malformed} malformed rows, "
            f"{self.damaged_lines} lines of NUL bytes",
            f"time stamps:    {self.missing_timestamps} missing, {self.repeated_timestamps} repeated, "
            f"{self.backward_timestamps} going backwards (replay and the closed-loop checks split the log there)",
            f"skipped:        {self.skipped_rows} rows;  deleted records: {self.deleted_records}",
            f"steering:       mean {self.steering_mean:+.4f}, std {self.steering_std:.4f}, "
            f"range [{self.steering_min:+.3f}, {self.steering_max:+.3f}], "
            f"|s| < {NEAR_ZERO}: {100 * self.near_zero_fraction:.1f}%",
            "histogram:",
        ]
        peak = max(self.histogram_counts, default=0) or 1
        for lo, hi, n in zip(self.histogram_edges[:-1], self.histogram_edges[1:], self.histogram_counts):
            lines.append(f"  [{lo:+.3f}, {hi:+.3f})  {n:6d}  {'#' * int(round(40 * n / peak))}")
        if self.problems:
            first = f", first {MAX_LISTED}" if self.problem_count > MAX_LISTED else ""
            lines.append(f"problems ({self.problem_count}{first}):")
            lines += [f"  - {p}" for p in self.problems]
        lines.append("OK" if self.ok else f"FAILED: {self.problem_count} problem(s)")
        return "\n".join(lines)


def _classify(message: str) -> str | None:
    for kind, words in KINDS:
        if any(word in message for word in words):
            return kind
    return None


def check(paths, on_error: str = "raise", decode: bool = True, bins: int = 21, threads: int = 4) -> CheckReport:
    """Read logs and report rows, cameras, image sizes and problems, without stopping at the first.

    Args:
        paths: log folders, CSVs or tubs.
        on_error: ``"raise"``: every bad row is a problem (``report.ok`` False);
            ``"skip"``: bad rows are only counted as skipped. Defaults to `"raise"`.
        decode: decode every image to find unreadable ones and their sizes. Defaults to `True`.
        bins: steering histogram bins over [-1, 1]. Defaults to `21` (0 in the middle of one bin).
        threads: threads decoding images (OpenCV releases the GIL). Defaults to `4`.
    """
    check_on_error(on_error)
    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    report = CheckReport(paths=paths)
    logs = []
    for path in paths:  # one unreadable log must not hide the problems of the others
        try:
            logs.append(read_log(path, on_error="skip"))
        except DataError as error:
            report.add_problem(str(error))
    if not logs:
        return report
    log = DrivingLog.concat(logs)
    for message in log.skipped:
        kind = _classify(message)
        if kind:
            setattr(report, kind, getattr(report, kind) + 1)
        if on_error == "skip":
            report.skipped_rows += 1
        else:
            report.add_problem(message)
    report.rows = len(log)
    report.recordings = len(log.recordings)
    for recording in log.recordings:
        stamps = log.timestamp[log.recording == recording]
        report.missing_timestamps += int(np.sum(~np.isfinite(stamps)))
        steps = np.diff(stamps[np.isfinite(stamps)])
        report.repeated_timestamps += int(np.sum(steps == 0))
        report.backward_timestamps += int(np.sum(steps < 0))
    report.cameras = list(log.cameras)
    report.deleted_records = log.deleted
    steering = log.steering.astype(np.float64)
    report.steering_mean, report.steering_std = float(steering.mean()), float(steering.std())
    report.steering_min, report.steering_max = float(steering.min()), float(steering.max())
    report.near_zero_fraction = float(np.mean(np.abs(steering) < NEAR_ZERO))
    counts, edges = np.histogram(np.clip(steering, -1, 1), bins=bins, range=(-1.0, 1.0))
    report.histogram_counts, report.histogram_edges = counts.tolist(), edges.round(4).tolist()
    if decode:
        jobs = [(path, f"{log.describe(i)} ({camera} camera)" if len(log.cameras) > 1 else log.describe(i))
                for camera in log.cameras for i, path in enumerate(log.images[camera]) if path]

        def frame_size(job):
            try:
                frame = read_frame(job[0], where=job[1])
                return f"{frame.shape[1]}x{frame.shape[0]}", None
            except DataError as error:
                return None, str(error)

        sizes: Counter = Counter()
        size_of = []
        with ThreadPoolExecutor(threads) as pool:
            for job, (size, problem) in zip(jobs, pool.map(frame_size, jobs)):
                report.images_checked += 1
                if problem:
                    report.unreadable_images += 1
                    report.add_problem(problem)
                else:
                    sizes[size] += 1
                    size_of.append((job, size))
        report.image_sizes = dict(sizes.most_common())
        if len(sizes) > 1:
            # Name the frames that differ from the usual size (whichever row they are on), not the row after them.
            usual = sizes.most_common(1)[0][0]
            odd = [f"{where}: {path} is {size}" for (path, where), size in size_of if size != usual]
            more = f"; and {len(odd) - MAX_ODD_FRAMES} more" if len(odd) > MAX_ODD_FRAMES else ""
            counts = ", ".join(f"{size}: {n}" for size, n in sizes.most_common())
            report.add_problem(f"frames of different sizes in one log ({counts}); not {usual}: "
                               + "; ".join(odd[:MAX_ODD_FRAMES]) + more)
    return report


def plot_histogram(report: CheckReport, out: str) -> None:
    """Write the steering histogram as a PNG (atomically)."""
    import matplotlib  # heavy: only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_tools.io import save_figure

    edges = np.asarray(report.histogram_edges)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(edges[:-1], report.histogram_counts, width=np.diff(edges), align="edge", edgecolor="black")
    ax.set_xlabel("steering")
    ax.set_ylabel("rows")
    ax.set_title(f"{report.rows} rows, {100 * report.near_zero_fraction:.0f}% near zero")
    fig.tight_layout()
    save_figure(fig, out)
