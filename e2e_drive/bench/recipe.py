"""``e2e-drive bench recipe``: the default training recipe scored across many logs and seeds, worst case first.

For every log (real ones given by path, and simulator recordings made to look like other drivers, ``--sim
keyboard@13``) and every seed, the protocol a new user follows:

1. ``train`` with the shipped defaults on the first ``1 - held_out`` of each recording (``train`` itself holds
   out the last part of that for validation and model selection);
2. score ``best.keras`` on the held-out last ``held_out`` of each recording's driven time (standing rows do
   not count: a log that ends parked would otherwise be scored on seconds of driving), rows the run never saw:
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
# Held-out frames the shift gain is measured on: enough for its mean, a second of warps and predictions.
SHIFT_FRAMES = 100


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


BEND = 0.05  # |smoothed recorded steering| beyond which a row is in a bend


def held_out_rows(driving_log: Any, fraction: float, min_speed: float = 0.0) -> np.ndarray:
    """The boolean mask of the last ``fraction`` of each recording's driven time.

    A row counts for the time to the next one while the car moves faster than ``min_speed`` (m/s) and the
    next row follows within the replay's segment gap; rows without a speed all move, a recording without time
    stamps counts rows. The cut is the row boundary whose
    held-out share is nearest ``fraction``: with every row moving at one frame rate it is the row split
    ``DrivingLog.split`` makes.
    """
    from e2e_drive.replay.trajectory import segment_gap

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--held-out: expected a fraction in (0, 1). Received: {fraction!r}")
    mask = np.zeros(len(driving_log), bool)
    for recording in driving_log.recordings:
        rows = np.flatnonzero(driving_log.recording == recording)
        times = np.asarray(driving_log.timestamp[rows], np.float64)
        speed = np.asarray(driving_log.speed[rows], np.float64)
        step = np.diff(times) if np.isfinite(times).all() else np.ones(len(rows) - 1)
        step = np.where((step > 0) & (step <= segment_gap(step)), step, 0.0)
        step = np.append(step, np.median(step[step > 0]) if (step > 0).any() else 1.0)  # the last frame's own
        moving = ~(np.isfinite(speed) & (speed <= min_speed))
        driven = step * moving
        if driven.sum() <= 0:
            driven = np.ones(len(rows))
        tail = np.concatenate([[0.0], np.cumsum(driven[::-1])])  # tail[k]: the last k rows' driven time
        k = int(np.argmin(np.abs(tail - fraction * tail[-1])))
        if 0 < k < len(rows):
            mask[rows[-k:]] = True
    return mask


def label_statistics(driving_log: Any) -> dict[str, Any]:
    """What kind of driver and log this is: frame rate, how the steering is distributed and how it moves."""
    from data_tools.smoothing import is_keyboard_steering

    steering = np.asarray(driving_log.steering, np.float64)
    steps = np.diff(driving_log.timestamp)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    fps = float(1.0 / np.median(steps)) if len(steps) else float("nan")
    return {"rows": len(steering), "fps": fps, "zero_share": float(np.mean(steering == 0.0)),
            "distinct_values": int(len(np.unique(steering))),
            "full_lock_share": float(np.mean(np.abs(steering) >= 0.99)),
            "mean_abs": float(np.mean(np.abs(steering))), "keyboard_like": is_keyboard_steering(driving_log),
            # Frame-to-frame change per second: keyboard taps and jittery sticks move fast, wheels slowly.
            "change_per_second": float(np.mean(np.abs(np.diff(steering)))) * fps if len(steering) > 1 else 0.0}


def _diagnosis(result: Any) -> dict[str, Any]:
    """Where the replayed car left the road (bend left, straight, bend right by the recorded steering) and how:
    understeer (steering less than the driver where it strayed) or oversteer / oscillation."""
    from data_tools.smoothing import gaussian_smooth

    recorded = gaussian_smooth(result.recorded, SMOOTH_SIGMA)
    where = np.flatnonzero(result.intervened)
    bends = {"left": 0, "straight": 0, "right": 0}
    under = over = 0
    for step in where:
        window = slice(max(0, step - 10), step + 1)  # the second or so before the car left the road
        bend = float(np.mean(recorded[window]))
        bends["left" if bend < -BEND else "right" if bend > BEND else "straight"] += 1
        if abs(bend) > BEND:
            if np.sign(bend) * float(np.mean(result.steering[window])) < abs(bend):
                under += 1
            else:
                over += 1
    rows_by_bend = {"left": int(np.sum(recorded < -BEND)), "straight": int(np.sum(np.abs(recorded) <= BEND)),
                    "right": int(np.sum(recorded > BEND))}
    sign_changes = np.mean(np.diff(np.sign(result.steering)) != 0) if len(result.steering) > 1 else 0.0
    return {"interventions_by_bend": bends, "steps_by_bend": rows_by_bend, "understeer": under, "oversteer": over,
            "steering_sign_changes_per_step": float(sign_changes)}


def _score(model_path: Path, held: Any, predictor=None, sim: SimLog | None = None,
           speed: float | None = None) -> dict[str, Any]:
    from data_tools import DataError
    from e2e_drive.closed_loop import log_spec, strictness, uncertainty
    from e2e_drive.evaluate import metrics, predict, smoothed_labels
    from e2e_drive.models import load_model, steering_function
    from e2e_drive.replay import car_for_log

    model = load_model(str(model_path))
    # One prediction of the held-out frames serves the offline figures and the learnt gain.
    predicted = predict(model, held).astype(np.float64)
    labels = smoothed_labels(held, SMOOTH_SIGMA)
    smoothed = metrics(predicted, held.steering, labels, float(np.mean(held.steering)))["smoothed"]
    prediction = steering_function(model)
    scored_replay: dict[str, Any]
    try:
        if np.isnan(held.timestamp).any() or (speed is None and np.isnan(held.speed).all()):
            raise DataError("no time stamps or no speed to rebuild the driven path from (tubs: --speed)", path="LOG")
        spec = log_spec(held, car_for_log(held), None, speed)
        total = spec.replay(prediction).total
    except DataError as error:  # offline figures only, and the reason
        scored_replay = {"skipped": str(error)}
    else:
        minutes = total.elapsed_seconds / 60.0
        scored_replay = {"autonomy": total.autonomy, "interventions": total.interventions,
                         "seconds": total.elapsed_seconds,
                         "interventions_per_minute": total.interventions / minutes if minutes else float("nan"),
                         "points_per_intervention": uncertainty(total.elapsed_seconds)["points_per_intervention"],
                         "shift_gain": shift_gain(prediction, held, spec),
                         "late_autonomy": strictness(spec)["late_autonomy"], **_diagnosis(total)}
    # The learnt gain: the slope of the model's steering on the smoothed labels (below 1: it steers too little).
    gain = float(np.polyfit(labels, predicted, 1)[0]) if np.std(labels) > 0 else float("nan")
    scored: dict[str, Any] = {
        "held_out_rows": len(held),
        "replay": scored_replay,
        "offline": {"pearson": smoothed["model"]["pearson"], "rmse": smoothed["model"]["rmse"],
                    "rmse_vs_mean": smoothed["model"]["rmse"] / smoothed["mean_baseline"]["rmse"], "gain": gain},
    }
    if sim is not None:
        from e2e_drive.sim import drive

        (result,) = drive(predictor, [UNSEEN_TRACK], laps=1.0, fps=sim.fps, progress=False)
        scored["simulator"] = {"track": UNSEEN_TRACK, "autonomy": result.autonomy,
                               "interventions": result.interventions, "laps": result.laps_completed}
    return scored


def shift_gain(prediction, held: Any, spec, frames: int = SHIFT_FRAMES) -> float:
    """How strongly the model steers back to its path: up to ``frames`` held-out centre frames, evenly spaced,
    are seen from the default recipe's largest viewpoint shift (``VIEWPOINT_FRACTION`` of the profile's
    intervention offset) to the left and to the right through the replay's own warp and camera (``spec``); the
    gain is the mean change of the model's steering between the two views over the change of the pure pursuit
    labels that training gives such views (``pursuit_correction`` at the speed the replay drives). 1: it
    corrects as it was taught; below 1: it corrects too little and the closed loop drifts off in bends."""
    from data_tools.augment import pursuit_correction
    from data_tools.frames import read_frame
    from e2e_drive.recipe import VIEWPOINT_FRACTION, pursuit_speed
    from e2e_drive.replay import CameraWarps

    car = spec.profile.car
    speed = pursuit_speed(spec.profile, held.speed, spec.speed)
    lateral = VIEWPOINT_FRACTION * spec.profile.intervention_offset
    rows = np.unique(np.linspace(0, len(held) - 1, min(frames, len(held))).round().astype(int))
    warps = CameraWarps(spec.camera)
    views = [read_frame(held.images["center"][i], where=held.describe(i)) for i in rows]
    left = prediction(np.stack([warps(view, lateral, 0.0) for view in views]))
    right = prediction(np.stack([warps(view, -lateral, 0.0) for view in views]))
    taught = (pursuit_correction(lateral, 0.0, speed, car.wheelbase, car.max_steer_deg)
              - pursuit_correction(-lateral, 0.0, speed, car.wheelbase, car.max_steer_deg))
    return float(np.mean(np.asarray(left, np.float64) - right) / taught)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst of each figure over ``runs`` (worst: lowest autonomy and Pearson, highest rates)."""
    def column(path: tuple[str, str]) -> np.ndarray:
        return np.array([run[path[0]][path[1]] for run in runs if path[1] in run.get(path[0], {})], np.float64)

    summary: dict[str, Any] = {"runs": len(runs)}
    for name, path, worst in (("autonomy", ("replay", "autonomy"), np.nanmin),
                              ("interventions_per_minute", ("replay", "interventions_per_minute"), np.nanmax),
                              ("pearson", ("offline", "pearson"), np.nanmin),
                              ("rmse_vs_mean", ("offline", "rmse_vs_mean"), np.nanmax),
                              ("gain", ("offline", "gain"), np.nanmin),
                              ("shift_gain", ("replay", "shift_gain"), np.nanmin),
                              # How strictly the span judges: the recorded steering 0.1 s late, driven blind.
                              ("late_autonomy", ("replay", "late_autonomy"), np.nanmin),
                              ("simulator_autonomy", ("simulator", "autonomy"), np.nanmin),
                              ("train_seconds", ("training", "seconds"), np.nanmax),
                              # A short scored span makes autonomy coarse: one intervention costs 6 s of it.
                              ("replay_seconds", ("replay", "seconds"), np.nanmin)):
        values = column(path)
        if len(values) and not np.isnan(values).all():
            summary[name] = {"mean": float(np.nanmean(values)), "worst": float(worst(values))}
    replayed = [run["replay"] for run in runs if "interventions_by_bend" in run["replay"]]
    if replayed:
        summary["interventions_by_bend"] = {bend: sum(r["interventions_by_bend"][bend] for r in replayed)
                                            for bend in ("left", "straight", "right")}
        summary["understeer"] = sum(r["understeer"] for r in replayed)
        summary["oversteer"] = sum(r["oversteer"] for r in replayed)
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
    from e2e_drive.replay import car_for_log, get_profile
    from e2e_drive.sim import record
    from e2e_drive.train import train
    from e2e_drive.train_config import TrainConfig

    if not logs and not sims:
        raise ValueError("LOG: give at least one log, or --sim DRIVER[@FPS]")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"--held-out: expected a fraction in (0, 1). Received: {held_out!r}")
    TrainConfig(**overrides)  # a bad override fails before any recording or training
    runs: list[dict[str, Any]] = []
    statistics: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_recipe_") as scratch:
        root = Path(out) if out is not None else Path(scratch)
        sources: list[tuple[str, Any, SimLog | None]] = [(os.fspath(p), os.fspath(p), None) for p in logs]
        for sim in sims:
            folder = root / "recordings" / sim.name.replace(":", "_").replace("@", "_")
            record(sim.track, folder, laps=sim.laps, seed=0, fps=sim.fps, driver=sim.driver, progress=False)
            sources.append((sim.name, str(folder), sim))
        for index, (name, path, sim) in enumerate(sources):
            driving_log = load_log([path])
            statistics[name] = label_statistics(driving_log)
            held_mask = held_out_rows(driving_log, held_out, get_profile(car_for_log(driving_log)).min_speed)
            trained_rows, held = driving_log[~held_mask], driving_log[held_mask]
            for seed in range(seeds):
                run_dir = root / "runs" / f"{index:02d}_{Path(path).name}_seed{seed}"
                if progress:
                    log.info("bench recipe: %s seed %d: training on %d rows, %d held out", name, seed,
                             len(trained_rows), len(held))
                start = time.perf_counter()
                options = dict(overrides)
                if np.isfinite(driving_log.speed).any():
                    options.pop("speed", None)  # --speed is for logs without a speed column, as in train
                result = train(trained_rows, run_dir, seed=seed, verbose=0, overwrite=True, **options)
                seconds = time.perf_counter() - start
                predictor = load_predictor(result.best_model_path) if sim is not None else None
                run = {"log": name, "seed": seed, "rows": len(driving_log),
                       "training": {"rows": len(trained_rows), "seconds": seconds,
                                    "epochs": result.epochs_run, "closed_loop": (result.closed_loop or {}).get(
                                        "autonomy")},
                       **_score(Path(result.best_model_path), held, predictor, sim, options.get("speed"))}
                runs.append(run)
                if progress:
                    log.info("bench recipe: %s seed %d: replay autonomy %s%%, Pearson %.2f, RMSE %.2fx the mean",
                             name, seed, run["replay"].get("autonomy", "-"), run["offline"]["pearson"],
                             run["offline"]["rmse_vs_mean"])
    by_log = {name: {**_summary([r for r in runs if r["log"] == name]), "labels": statistics[name]}
              for name, _, _ in sources}
    worst = min(by_log, key=lambda name: by_log[name].get("autonomy", {}).get("worst", float("inf")))
    return {"recipe": dict(overrides), "held_out": held_out, "seeds": seeds, "runs": runs, "logs": by_log,
            "all": _summary(runs), "worst_log": worst}


def format_recipe_report(report: dict[str, Any]) -> str:
    changed = ", ".join(f"{k}={v}" for k, v in report["recipe"].items()) or "none (the shipped defaults)"
    lines = [f"recipe changes: {changed}; held out: the last {report['held_out']:.0%} of each recording's driving; "
             f"seeds 0..{report['seeds'] - 1}",
             f"{'log':<34}{'autonomy mean/worst':>21}{'interv/min':>12}{'Pearson':>16}{'RMSE/mean':>16}"
             f"{'sim track':>11}{'train s':>9}{'scored s':>10}"]

    def row(name: str, s: dict[str, Any]) -> str:
        def pair(key: str, fmt: str) -> str:
            return f"{s[key]['mean']:{fmt}}/{s[key]['worst']:{fmt}}" if key in s else "-"

        return (f"{name:<34}{pair('autonomy', '.1f'):>21}{pair('interventions_per_minute', '.2f'):>12}"
                f"{pair('pearson', '.2f'):>16}{pair('rmse_vs_mean', '.2f'):>16}"
                f"{pair('simulator_autonomy', '.0f'):>11}{s['train_seconds']['worst']:>9.0f}"
                f"{s['replay_seconds']['worst'] if 'replay_seconds' in s else float('nan'):>10.0f}")

    lines += [row(name, summary) for name, summary in report["logs"].items()]
    lines.append(row("all (worst log and seed)", report["all"]))
    lines.append(f"worst log: {report['worst_log']}")
    lines.append("diagnosis (labels of the whole log; interventions of every seed's held-out replay):")
    lines.append(f"{'log':<34}{'fps':>6}{'zeros':>7}{'values':>8}{'lock':>6}{'change/s':>9}{'gain':>12}"
                 f"{'shift gain':>12}{'0.1 s late':>12}{'interventions left/straight/right':>35}{'under/over':>12}")
    for name, summary in report["logs"].items():
        labels = summary["labels"]
        gain = f"{summary['gain']['mean']:.2f}" if "gain" in summary else "-"
        back = f"{summary['shift_gain']['mean']:.2f}" if "shift_gain" in summary else "-"
        late = f"{summary['late_autonomy']['worst']:.1f}" if "late_autonomy" in summary else "-"
        bends, steer = "-", "-"
        if "interventions_by_bend" in summary:
            bends = "/".join(str(summary["interventions_by_bend"][b]) for b in ("left", "straight", "right"))
            steer = f"{summary['understeer']}/{summary['oversteer']}"
        lines.append(f"{name:<34}{labels['fps']:>6.1f}{labels['zero_share']:>7.0%}{labels['distinct_values']:>8}"
                     f"{labels['full_lock_share']:>6.0%}{labels['change_per_second']:>9.2f}{gain:>12}{back:>12}"
                     f"{late:>12}{bends:>35}{steer:>12}")
    return "\n".join(lines)
