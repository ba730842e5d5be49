"""Offline evaluation of a steering model on a driving log (``e2e-drive evaluate``).

Every figure is reported next to a predict-the-mean baseline on the same data,
against the raw labels and against Gaussian-smoothed labels (human steering is
noisy frame to frame, so a good model tracks the smoothed signal).

A model with a throttle head (``pilotnet(outputs=("steering", "throttle"))``) is also scored on the log's
throttle (``report["throttle"]``: RMSE, MAE and Pearson next to the mean baseline); the steering report is the
same as for a steering-only model.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from data_tools.log import DrivingLog

# Steering bins (edges) of the per-bin error table: straight, gentle, medium, sharp, each way.
STEERING_BINS = (-1.0, -0.3, -0.1, -0.02, 0.02, 0.1, 0.3, 1.0)


def _errors(prediction: np.ndarray, label: np.ndarray) -> dict[str, float]:
    error = prediction - label
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")  # undefined for a constant series (the mean baseline, a flat label)
    from scipy.stats import pearsonr

    return float(pearsonr(a, b).statistic)


def metrics(prediction: np.ndarray, label: np.ndarray, smoothed: np.ndarray, mean: float) -> dict[str, Any]:
    """Model and mean-baseline figures against raw and smoothed labels.

    ``mean`` is the baseline's constant prediction (the label mean of the data).
    """
    prediction = np.asarray(prediction, np.float64)
    label = np.asarray(label, np.float64)
    smoothed = np.asarray(smoothed, np.float64)
    baseline = np.full_like(label, mean)
    result: dict[str, Any] = {"count": int(len(label))}
    for name, target in (("raw", label), ("smoothed", smoothed)):
        result[name] = {
            "model": {**_errors(prediction, target), "pearson": _pearson(prediction, target)},
            "mean_baseline": {**_errors(baseline, target), "pearson": float("nan")},
        }
    bins = []
    which = np.clip(np.digitize(label, STEERING_BINS[1:-1]), 0, len(STEERING_BINS) - 2)
    for b in range(len(STEERING_BINS) - 1):
        rows = which == b
        entry: dict[str, Any] = {"low": STEERING_BINS[b], "high": STEERING_BINS[b + 1], "count": int(rows.sum())}
        if rows.any():
            entry.update(model=_errors(prediction[rows], label[rows]),
                         mean_baseline=_errors(baseline[rows], label[rows]))
        bins.append(entry)
    result["by_steering_bin"] = bins
    return result


def predict_outputs(model, log: DrivingLog, batch_size: int = 64, verbose: int = 0) -> dict[str, np.ndarray]:
    """Every output of ``model`` on the centre frames of ``log``: ``{name: float32 (N,)}``, steering first
    (checks the frame shape first)."""
    from data_tools.dataset import DrivingDataset
    from e2e_drive.models import check_fits, output_names

    dataset = DrivingDataset(log, batch_size, augment=None, shuffle=False, cache=None)
    check_fits(model, dataset.frame_shape, f"the data ({log.describe(0)})")
    names = output_names(model)
    predicted = model.predict(dataset, verbose=verbose)
    if not isinstance(predicted, dict):
        predicted = dict(zip(names, predicted)) if isinstance(predicted, (list, tuple)) else {names[0]: predicted}
    return {name: np.asarray(predicted[name], np.float32).reshape(-1) for name in names}


def predict(model, log: DrivingLog, batch_size: int = 64, verbose: int = 0) -> np.ndarray:
    """Steering predictions for the centre frames of ``log`` (checks the frame shape first)."""
    return predict_outputs(model, log, batch_size, verbose)["steering"]


def replay_summary(model, log: DrivingLog, camera=None, required: bool = False, speed: float | None = None,
                   plot: str | os.PathLike | None = None) -> dict[str, Any]:
    """The model's closed-loop replay on ``log`` as the end of ``train`` scores its validation span (whole
    segments, ``e2e_drive.closed_loop``; ``speed`` in m/s for logs without a speed column), with what one
    intervention costs there, or why it could not be replayed; ``plot``: also draw where it strayed."""
    from data_tools import DataError
    from e2e_drive.closed_loop import log_spec, strictness, uncertainty
    from e2e_drive.models import steering_function
    from e2e_drive.replay import car_for_log, plot_replay

    if not required and (np.isnan(log.timestamp).any() or (speed is None and np.isnan(log.speed).all())):
        return {"skipped": "the log has no time stamps or no speed to rebuild the driven path from (tubs: --speed)"}
    try:
        car = car_for_log(log)  # the car profile the data calls for (the simulator's own recordings: its car)
        spec = log_spec(log, car, camera, speed)
        report = spec.replay(steering_function(model))
    except DataError as error:
        if required:
            raise
        return {"skipped": str(error)}
    summary = {"car": car, **report.summary(), **uncertainty(report.total.elapsed_seconds), **strictness(spec)}
    if plot:
        plot_replay(report, plot, title="closed-loop replay")
        summary["plot"] = os.fspath(plot)
    return summary


def throttle_metrics(prediction: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """Throttle RMSE, MAE and Pearson of ``prediction`` against ``label``, next to predicting the label mean."""
    prediction = np.asarray(prediction, np.float64)
    label = np.asarray(label, np.float64)
    mean = float(np.mean(label))
    baseline = np.full_like(label, mean)
    return {"count": int(len(label)), "mean": mean,
            "model": {**_errors(prediction, label), "pearson": _pearson(prediction, label)},
            "mean_baseline": {**_errors(baseline, label), "pearson": float("nan")}}


def smoothed_labels(log: DrivingLog, sigma: float) -> np.ndarray:
    from data_tools.smoothing import smooth_steering

    return smooth_steering(log, sigma).steering


def plot_predictions(label: np.ndarray, smoothed: np.ndarray, prediction: np.ndarray, path: str, title: str = "",
                     throttle: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Predicted vs true steering over time as a PNG (written atomically); ``throttle=(label, prediction)`` adds a
    throttle panel below."""
    import matplotlib  # here: only plotting needs it, and importing it is slow

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_tools.io import save_figure

    if throttle is None:
        fig, ax = plt.subplots(figsize=(10, 4))
        axes = [ax]
    else:
        fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
        ax = axes[0]
    frames = np.arange(len(label))
    ax.plot(frames, label, lw=0.8, color="0.6", label="true")
    ax.plot(frames, smoothed, lw=1.2, color="tab:blue", label="true (smoothed)")
    ax.plot(frames, prediction, lw=1.2, color="tab:orange", label="predicted")
    ax.set_ylabel("steering")
    ax.set_title(title)
    if throttle is not None:
        true_throttle, predicted_throttle = throttle
        axes[1].plot(frames, true_throttle, lw=0.8, color="0.6", label="true")
        axes[1].plot(frames, predicted_throttle, lw=1.2, color="tab:orange", label="predicted")
        axes[1].set_ylabel("throttle")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(loc="upper right")
    axes[-1].set_xlabel("frame")
    save_figure(fig, path)


def evaluate(
    model_or_path,
    data: Sequence[str] | DrivingLog,
    *,
    smooth_sigma: float = 4.0,
    batch_size: int = 64,
    plot: str | None = None,
    verbose: int = 0,
    replay: bool | None = None,
    camera: str | os.PathLike | None = None,
    speed: float | None = None,
    replay_plot: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """RMSE, MAE and Pearson correlation of a model on ``data``, each next to a mean baseline, and its closed-loop
    autonomy when the log can be replayed.

    Args:
        model_or_path: a ``keras.Model`` or the path of a ``.keras`` file.
        data: paths (``data_tools.read_log``) or a ``DrivingLog``.
        smooth_sigma: sigma in frames of the smoothed labels. Defaults to `4.0`.
        batch_size: prediction batch size. Defaults to `64`.
        plot: write a PNG of predicted vs true steering (and throttle) over time here. Defaults to `None`.
        replay: also drive the model through the log (``e2e_drive.replay``): ``None`` does it when the log has
            time stamps and speed (Udacity logs), ``True`` requires it, ``False`` skips it. Defaults to `None`.
        camera: the camera calibration JSON for the replay (``e2e-drive calibrate``). Defaults to the profile's.
        speed: metres per second for the replay of logs without a speed column (tubs). Defaults to the column.
        replay_plot: write a PNG of where the replayed car strayed here (``plot_replay``). Defaults to `None`.

    Returns:
        ``{"count", "raw": {"model": {rmse, mae, pearson}, "mean_baseline": {...}},
        "smoothed": {...}, "by_steering_bin": [...], "smooth_sigma", "model"}``, plus for a model with a
        throttle output ``"throttle": {"count", "mean", "model": {rmse, mae, pearson}, "mean_baseline": {...}}``
        (against the log's throttle column), and ``"replay"``: the replay summary (autonomy, interventions,
        mean/max |offset|, ...) or ``{"skipped": reason}``.

    Example:
        >>> report = evaluate("runs/udacity/best.keras", ["../shared/data/udacity_sim_a"])
        >>> report["smoothed"]["model"]["rmse"] < report["smoothed"]["mean_baseline"]["rmse"]
    """
    from data_tools import load_log
    from e2e_drive.models import load_model

    name = os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path.name
    model = load_model(name) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    log = load_log(data)
    outputs = predict_outputs(model, log, batch_size, verbose)
    prediction = outputs["steering"]
    smoothed = smoothed_labels(log, smooth_sigma)
    report = metrics(prediction, log.steering, smoothed, float(np.mean(log.steering)))
    report.update(smooth_sigma=float(smooth_sigma), model=name)
    if "throttle" in outputs:
        recorded = np.isfinite(log.throttle)  # tubs may lack user/throttle: no label, no score
        report["throttle"] = (throttle_metrics(outputs["throttle"][recorded], log.throttle[recorded])
                              if recorded.any() else {"skipped": "the log records no throttle"})
    if replay is not False:
        report["replay"] = replay_summary(model, log, camera, required=bool(replay), speed=speed, plot=replay_plot)
    if plot:
        plot_predictions(log.steering, smoothed, prediction, plot, title=f"{name} on {log.source[0]}",
                         throttle=(log.throttle, outputs["throttle"]) if "throttle" in outputs else None)
        report["plot"] = os.fspath(plot)
    return report


def format_report(report: dict[str, Any]) -> str:
    """A small human-readable table of ``evaluate``'s result."""
    lines = [f"{report['model']}: {report['count']} frames"]
    lines.append(f"{'labels':<22}{'model':>28}{'mean baseline':>28}")
    for name in ("raw", "smoothed"):
        label = name if name == "raw" else f"smoothed (sigma {report['smooth_sigma']:g})"
        m, b = report[name]["model"], report[name]["mean_baseline"]
        lines.append(f"{label:<22}  rmse {m['rmse']:.4f} mae {m['mae']:.4f} r {m['pearson']:+.3f}"
                     f"    rmse {b['rmse']:.4f} mae {b['mae']:.4f}")
    lines.append("by steering bin (raw labels): rmse model / baseline")
    for entry in report["by_steering_bin"]:
        if entry["count"]:
            lines.append(f"  [{entry['low']:+.2f}, {entry['high']:+.2f}) n={entry['count']:<5}"
                         f" {entry['model']['rmse']:.4f} / {entry['mean_baseline']['rmse']:.4f}")
    if "throttle" in report and "skipped" in report["throttle"]:
        lines.append(f"{'throttle':<22}  skipped ({report['throttle']['skipped']})")
    elif "throttle" in report:
        m, b = report["throttle"]["model"], report["throttle"]["mean_baseline"]
        lines.append(f"{'throttle':<22}  rmse {m['rmse']:.4f} mae {m['mae']:.4f} r {m['pearson']:+.3f}"
                     f"    rmse {b['rmse']:.4f} mae {b['mae']:.4f}")
    replayed = report.get("replay")
    if replayed and "skipped" in replayed:
        lines.append(f"replay: skipped ({replayed['skipped']})")
    elif replayed:
        lines.append(f"replay (closed loop on the log): autonomy {replayed['autonomy']:.1f}%, "
                     f"{replayed['interventions']} interventions in {replayed['elapsed_seconds']:.0f} s, "
                     f"mean |offset| {replayed['mean_abs_offset']:.2f} m"
                     + (f" (plot: {replayed['plot']})" if "plot" in replayed else ""))
        if replayed.get("too_short"):
            lines.append(f"  a short span: one intervention costs {replayed['points_per_intervention']:.0f} points "
                         "of autonomy here (replay minutes of driving for a firmer figure)")
        if replayed.get("strict"):
            from e2e_drive.closed_loop import strict_warning

            lines.append(f"  {strict_warning(replayed)}")
    return "\n".join(lines)
