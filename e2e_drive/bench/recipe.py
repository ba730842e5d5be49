"""``e2e-drive bench recipe``: the default training recipe scored across many logs and seeds, worst case first.

For every log (real ones given by path, and simulator recordings made to look like other drivers, ``--sim
keyboard@13``) and every seed, the protocol a new user follows:

1. ``train`` with the shipped defaults on the first ``1 - held_out`` of each recording (``train`` itself holds
   out the last part of that for validation and model selection);
2. score ``best.keras`` on the held-out last ``held_out`` of each recording, rows the run never saw:
   closed-loop replay (NVIDIA's autonomy, interventions per minute) and offline against the smoothed labels
   (Pearson, RMSE as a multiple of the mean predictor's: above 1 is worse than predicting the mean);
3. for simulator recordings, also the true closed loop: the simulator drives an unseen track.

The figure that counts is the worst log and seed: a recipe tuned to one log shows up there.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

HELD_OUT = 0.2
SMOOTH_SIGMA = 4.0  # frames, as BENCHMARKS.md's recipe table and ``e2e-drive evaluate``
UNSEEN_TRACK = 101


@dataclass(frozen=True)
class SimLog:
    """A simulator recording made for the benchmark: a driving style at a frame rate on one track."""

    driver: str
    fps: float
    track: int = 11
    laps: float = 3.0

    @property
    def name(self) -> str:
        return f"sim:{self.driver}@{self.fps:g}"


def parse_sim(text: str, laps: float = 3.0) -> SimLog:
    """``DRIVER[@FPS]`` (e.g. ``keyboard@13``) as a ``SimLog``; a ValueError naming the flag otherwise."""
    from e2e_drive.sim.driver_style import STYLES

    driver, _, fps = text.partition("@")
    if driver not in STYLES:
        raise ValueError(f"--sim {text}: unknown driving style {driver!r}; expected one of: {', '.join(STYLES)}")
    try:
        rate = float(fps) if fps else 10.0
    except ValueError:
        raise ValueError(f"--sim {text}: expected DRIVER[@FPS], e.g. keyboard@13") from None
    if not 1.0 <= rate <= 60.0:
        raise ValueError(f"--sim {text}: frames per second must be in [1, 60]")
    return SimLog(driver, rate, laps=laps)


def _score(model_path: Path, held: Any, predictor=None, sim: SimLog | None = None,
           speed: float | None = None) -> dict[str, Any]:
    from e2e_drive.evaluate import evaluate

    report = evaluate(str(model_path), held, smooth_sigma=SMOOTH_SIGMA, replay=None, speed=speed)
    smoothed = report["smoothed"]
    replay = report["replay"]
    if "skipped" in replay:  # e.g. a tub without --speed: offline figures only, and the reason
        scored_replay: dict[str, Any] = {"skipped": replay["skipped"]}
    else:
        minutes = replay["elapsed_seconds"] / 60.0
        scored_replay = {"autonomy": replay["autonomy"], "interventions": replay["interventions"],
                         "seconds": replay["elapsed_seconds"],
                         "interventions_per_minute": replay["interventions"] / minutes if minutes else float("nan"),
                         "points_per_intervention": replay["points_per_intervention"]}
    scored: dict[str, Any] = {
        "held_out_rows": report["count"],
        "replay": scored_replay,
        "offline": {"pearson": smoothed["model"]["pearson"], "rmse": smoothed["model"]["rmse"],
                    "rmse_vs_mean": smoothed["model"]["rmse"] / smoothed["mean_baseline"]["rmse"]},
    }
    if sim is not None:
        from e2e_drive.sim import drive

        (result,) = drive(predictor, [UNSEEN_TRACK], laps=1.0, fps=sim.fps, progress=False)
        scored["simulator"] = {"track": UNSEEN_TRACK, "autonomy": result.autonomy,
                               "interventions": result.interventions, "laps": result.laps_completed}
    return scored


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst of each figure over ``runs`` (worst: lowest autonomy and Pearson, highest rates)."""
    def column(path: tuple[str, str]) -> np.ndarray:
        return np.array([run[path[0]][path[1]] for run in runs if path[1] in run.get(path[0], {})], np.float64)

    summary: dict[str, Any] = {"runs": len(runs)}
    for name, path, worst in (("autonomy", ("replay", "autonomy"), np.nanmin),
                              ("interventions_per_minute", ("replay", "interventions_per_minute"), np.nanmax),
                              ("pearson", ("offline", "pearson"), np.nanmin),
                              ("rmse_vs_mean", ("offline", "rmse_vs_mean"), np.nanmax),
                              ("simulator_autonomy", ("simulator", "autonomy"), np.nanmin),
                              ("train_seconds", ("training", "seconds"), np.nanmax)):
        values = column(path)
        if len(values) and not np.isnan(values).all():
            summary[name] = {"mean": float(np.nanmean(values)), "worst": float(worst(values))}
    return summary


def bench_recipe(logs: Sequence[str] = (), *, sims: Sequence[SimLog] = (), seeds: int = 1,
                 held_out: float = HELD_OUT, out: str | os.PathLike | None = None, progress: bool = True,
                 **overrides: Any) -> dict[str, Any]:
    """Train the default recipe on every log and seed and score it on held-out rows (see the module docstring).

    Args:
        logs: real logs (Udacity folders or CSVs, tubs), each benchmarked on its own.
        sims: simulator recordings to make first (``SimLog``: a style, frame rate and track).
        seeds: seeds 0..seeds-1 per log.
        held_out: the last fraction of each recording kept from training and scored. Defaults to `0.2`.
        out: keep the recordings and run folders here. Defaults to a temporary folder, removed after.
        progress: log progress per run.
        **overrides: ``TrainConfig`` fields changed from the shipped defaults (a quick run's ``epochs``...);
            reported, since the figures are then not the default recipe's.

    Returns:
        ``{"recipe": {changed fields}, "held_out", "runs": [...], "logs": {name: summary}, "all": summary,
        "worst_log": name}``: each run holds its log, seed, rows, training seconds, replay and offline scores.
    """
    from data_tools import load_log
    from deploy import load_predictor
    from e2e_drive.sim import record
    from e2e_drive.train import train
    from e2e_drive.train_config import TrainConfig

    if not logs and not sims:
        raise ValueError("LOG: give at least one log, or --sim DRIVER[@FPS]")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"--held-out: expected a fraction in (0, 1). Received: {held_out!r}")
    TrainConfig(**overrides)  # a bad override fails before any recording or training
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_recipe_") as scratch:
        root = Path(out) if out is not None else Path(scratch)
        sources: list[tuple[str, Any, SimLog | None]] = [(os.fspath(p), os.fspath(p), None) for p in logs]
        for sim in sims:
            folder = root / "recordings" / sim.name.replace(":", "_").replace("@", "_")
            record(sim.track, folder, laps=sim.laps, seed=0, fps=sim.fps, driver=sim.driver, progress=False)
            sources.append((sim.name, str(folder), sim))
        for index, (name, path, sim) in enumerate(sources):
            driving_log = load_log([path])
            trained_rows, held = driving_log.split(held_out)
            for seed in range(seeds):
                run_dir = root / "runs" / f"{index:02d}_{Path(path).name}_seed{seed}"
                if progress:
                    log.info("bench recipe: %s seed %d: training on %d rows, %d held out", name, seed,
                             len(trained_rows), len(held))
                start = time.perf_counter()
                result = train(trained_rows, run_dir, seed=seed, verbose=0, overwrite=True, **overrides)
                seconds = time.perf_counter() - start
                predictor = load_predictor(result.best_model_path) if sim is not None else None
                run = {"log": name, "seed": seed, "rows": len(driving_log),
                       "training": {"rows": len(trained_rows), "seconds": seconds,
                                    "epochs": result.epochs_run, "closed_loop": (result.closed_loop or {}).get(
                                        "autonomy")},
                       **_score(Path(result.best_model_path), held, predictor, sim, overrides.get("speed"))}
                runs.append(run)
                if progress:
                    log.info("bench recipe: %s seed %d: replay autonomy %s%%, Pearson %.2f, RMSE %.2fx the mean",
                             name, seed, run["replay"].get("autonomy", "-"), run["offline"]["pearson"],
                             run["offline"]["rmse_vs_mean"])
    by_log = {name: _summary([r for r in runs if r["log"] == name]) for name, _, _ in sources}
    worst = min(by_log, key=lambda name: by_log[name].get("autonomy", {}).get("worst", float("inf")))
    return {"recipe": dict(overrides), "held_out": held_out, "seeds": seeds, "runs": runs, "logs": by_log,
            "all": _summary(runs), "worst_log": worst}


def format_recipe_report(report: dict[str, Any]) -> str:
    changed = ", ".join(f"{k}={v}" for k, v in report["recipe"].items()) or "none (the shipped defaults)"
    lines = [f"recipe changes: {changed}; held out: the last {report['held_out']:.0%} of each recording; "
             f"seeds 0..{report['seeds'] - 1}",
             f"{'log':<34}{'autonomy mean/worst':>21}{'interv/min':>12}{'Pearson':>16}{'RMSE/mean':>16}"
             f"{'sim track':>11}{'train s':>9}"]

    def row(name: str, s: dict[str, Any]) -> str:
        def pair(key: str, fmt: str) -> str:
            return f"{s[key]['mean']:{fmt}}/{s[key]['worst']:{fmt}}" if key in s else "-"

        return (f"{name:<34}{pair('autonomy', '.1f'):>21}{pair('interventions_per_minute', '.2f'):>12}"
                f"{pair('pearson', '.2f'):>16}{pair('rmse_vs_mean', '.2f'):>16}"
                f"{pair('simulator_autonomy', '.0f'):>11}{s['train_seconds']['worst']:>9.0f}")

    lines += [row(name, summary) for name, summary in report["logs"].items()]
    lines.append(row("all (worst log and seed)", report["all"]))
    lines.append(f"worst log: {report['worst_log']}")
    return "\n".join(lines)
