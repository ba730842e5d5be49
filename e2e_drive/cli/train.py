"""``e2e-drive train``, ``e2e-drive evaluate`` and ``e2e-drive saliency``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any

from e2e_drive.cli import add_command
from e2e_drive.cli.output import emit
from e2e_drive.cli.types import (crop, fraction, nonnegative_float, nonnegative_int, output_file, positive_float,
                                 positive_int)
from e2e_drive.models import ACTIVATIONS, CONVS
from e2e_drive.cli.replay import CAR_PROFILES
from e2e_drive.sim.autonomy import INTERVENTION_SECONDS
from e2e_drive.train_config import LR_SCHEDULES, SELECT_BY, TrainConfigError, parse_loss_weights, parse_targets

log = logging.getLogger(__name__)

TRAIN_EPILOG = """examples:
  e2e-drive train ../shared/data/udacity_sim_a --out runs/udacity --epochs 10
  e2e-drive train tub_a tub_b --out runs/donkey --activation prelu --smooth-steering 2 --json
  e2e-drive train ../shared/data/udacity_sim_a --out runs/udacity --epochs 20 --resume
  e2e-drive train ~/mycar/data --out runs/car --targets steering,throttle --loss-weights steering=1,throttle=0.5
  e2e-drive calibrate data/run1 --out cam.json && e2e-drive train data/run1 --out runs/run1 --camera cam.json

multi-worker (one command per machine; worker 0 is the chief and writes the run):
  TF_CONFIG='{"cluster":{"worker":["host0:2222","host1:2222"]},"task":{"type":"worker","index":0}}' \\
    e2e-drive train DATA --out runs/mw --strategy multiworker
"""

# Above this many autonomy points per intervention the closed-loop figure is flagged as coarse (20: a 30 s span).
SHORT_SPAN_POINTS = 20.0

# Flag destination -> e2e_drive.train.train keyword. Flags default to None: only the flags the user gave are
# passed on, so a resumed run can tell a changed setting from a default.
TRAIN_OPTIONS = {
    "epochs": "epochs", "batch_size": "batch_size", "lr": "learning_rate", "activation": "activation",
    "conv": "conv", "dropout": "dropout", "balance": "balance", "seed": "seed", "val_fraction": "val_fraction",
    "workers": "workers", "worker_processes": "worker_processes", "crop": "crop",
    "smooth_steering": "smooth_steering", "resume": "resume", "early_stopping": "early_stopping",
    "strategy": "strategy", "mixed_precision": "mixed_precision", "cache": "cache", "cache_dir": "cache_dir",
    "overwrite": "overwrite", "targets": "targets", "loss_weights": "loss_weights",
    "smooth_seconds": "smooth_seconds", "side_correction": "side_correction", "car": "car", "select_by": "select_by",
    "viewpoint_shift": "viewpoint_shift", "epoch_samples": "epoch_samples", "camera": "camera",
    "lr_schedule": "lr_schedule", "speed": "speed",
}


def _side_correction(text: str):
    """``auto`` (derived from the car; passed to ``train`` as None) or a number in [0, 1)."""
    if text == "auto":
        return "auto"
    value = nonnegative_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0, 1), got {text}")
    return value


def _config_type(parse):
    """An argparse type from a ``train_config`` parser (its message without the flag name argparse adds)."""

    def convert(text: str):
        try:
            return parse(text)
        except TrainConfigError as error:
            raise argparse.ArgumentTypeError(str(error).split(": ", 1)[-1]) from None

    return convert


def register(commands, common: argparse.ArgumentParser) -> None:
    train = add_command(
        commands, "train", common=common, handler=run_train,
        help="train PilotNet on driving logs",
        description="Train PilotNet on Udacity folders, donkeycar tubs or simulator recordings. Writes "
        "config.json, best.keras, last.keras, history.csv, loss.png and TensorBoard logs to --out; then drives "
        "best.keras closed loop through the validation span (the last --val-fraction of each recording, as "
        "e2e-drive replay scores it) and writes closed_loop.json and closed_loop.png (where the car strayed).",
        epilog=TRAIN_EPILOG,
    )
    train.add_argument("data", nargs="+", metavar="DATA", help="Udacity folders/CSVs, tubs or recordings")
    train.add_argument("--out", required=True, help="run directory, e.g. runs/NAME")
    train.add_argument("--epochs", type=positive_int, default=None,
                       help="total epochs; a resumed run continues up to this number (default 10)")
    train.add_argument("--batch-size", type=positive_int, default=None, help="samples per step (default 64)")
    train.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate (default 1e-3)")
    train.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None,
                       help="cosine: decay --lr to 0 over the --epochs (a resumed run with more epochs follows the "
                       "stretched curve from where it stopped); constant: --lr throughout (default cosine)")
    train.add_argument("--activation", choices=ACTIVATIONS, default=None, help="activation layers (default elu)")
    train.add_argument("--conv", choices=CONVS, default=None, help="convolution layers (default keras)")
    train.add_argument("--dropout", type=fraction, default=None,
                       help="dropout rate after flatten and dense layers, in [0, 1) (default 0)")
    train.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                       help="train on the centre frames as they are (default: augment)")
    train.add_argument("--balance", action="store_true", default=None, help="flatten the steering histogram")
    train.add_argument("--seed", type=int, default=None, help="the one seed of the run (default 0)")
    train.add_argument("--val-fraction", type=fraction, default=None,
                       help="last fraction of each recording held out, time-ordered, in [0, 1) (default 0.2)")
    train.add_argument("--workers", type=positive_int, default=None, help="batch loader workers (default 1)")
    train.add_argument("--worker-processes", action="store_true", default=None,
                       help="run the --workers as processes (batches through shared memory) instead of threads")
    train.add_argument("--crop", type=crop, default=None, metavar="TOP,BOTTOM",
                       help="rows cut from the frame (default: 60,25 for 160-row frames)")
    train.add_argument("--smooth-seconds", type=nonnegative_float, default=None, metavar="SECONDS",
                       help="Gaussian-smooth the labels over SECONDS of the time stamps; 0: off (default: only "
                       "recordings that look keyboard-driven, over 0.4 s)")
    train.add_argument("--side-correction", type=_side_correction, default=None, metavar="X|auto",
                       help="steering added for the left camera, subtracted for the right (default 0.2); auto: "
                       "derived from --car's geometry and the log's speed")
    train.add_argument("--viewpoint-shift", type=nonnegative_float, default=None, metavar="METRES",
                       help="PilotNet's shift-and-rotate augmentation: frames seen from up to METRES to either "
                       "side (and 0.1 rad turned) through --car's camera, labelled with its pure pursuit back to "
                       "the path; 0: off (default: half of --car's intervention offset, 1.35 m for udacity)")
    train.add_argument("--epoch-samples", type=nonnegative_int, default=None, metavar="N",
                       help="samples per epoch: a smaller log serves its rows several times, freshly augmented; "
                       "0: each row once (default: 12000, at most 8 passes over the rows)")
    train.add_argument("--car", choices=CAR_PROFILES, default=None,
                       help="car and camera profile: wheelbase, camera, road width for viewpoint shifts, derived "
                       "corrections and replay (default: from the data: sim for `e2e-drive sim record` folders, "
                       "donkey for donkeycar tubs, else udacity)")
    train.add_argument("--camera", metavar="CAMERA.json", default=None,
                       help="camera calibration (e2e-drive calibrate) for the viewpoint shifts, the derived side "
                       "correction and the closed-loop checks (default: --car's camera)")
    train.add_argument("--speed", type=positive_float, default=None, metavar="M/S",
                       help="metres per second, for logs without a speed column (donkeycar tubs): the closed-loop "
                       "check and --select-by autonomy replay at it, as e2e-drive replay --speed, and the recipe's "
                       "steering corrections use it; given, it replaces a speed column (default: the logs' speed "
                       "column)")
    train.add_argument("--select-by", choices=SELECT_BY, default=None,
                       help="which epoch becomes best.keras: the last (no early stopping), the lowest val loss, "
                       "or the most replay autonomy on the validation span (needs time stamps and speed; "
                       "minutes of validation driving; for recordings of `e2e-drive sim record` the simulator "
                       "drives their tracks instead); --early-stopping applies to the last two (default last)")
    train.add_argument("--smooth-steering", type=nonnegative_float, default=None, metavar="SIGMA",
                       help="Gaussian-smooth the labels over SIGMA frames (default 0: off)")
    train.add_argument("--cache", choices=("auto", "memory", "disk", "none"), default=None,
                       help="decoded-frame cache: memory, disk (memory-mapped under --cache-dir), none, or auto "
                       "(memory when the frames fit, else disk) (default auto)")
    train.add_argument("--targets", type=_config_type(parse_targets), default=None, metavar="steering[,throttle]",
                       help="what the model learns: steering, or steering,throttle (a second head on the logs' "
                       "throttle) (default steering)")
    train.add_argument("--loss-weights", type=_config_type(parse_loss_weights), default=None,
                       metavar="TARGET=W[,...]",
                       help="weight of each target's MSE in the loss, e.g. steering=1,throttle=0.5 (default 1 each)")
    train.add_argument("--cache-dir", metavar="DIR", default=None, help="folder of the disk cache")
    train.add_argument("--resume", action="store_true", default=None,
                       help="continue the run in --out from last.keras")
    train.add_argument("--overwrite", action="store_true", default=None,
                       help="replace a finished run in --out instead of refusing")
    train.add_argument("--early-stopping", type=nonnegative_int, default=None, metavar="PATIENCE",
                       help="with --select-by val_loss or autonomy: stop after PATIENCE epochs without "
                       "improvement; 0 disables (default 5)")
    train.add_argument("--strategy", choices=("auto", "mirrored", "multiworker"), default=None,
                       help="auto (mirrored when several GPUs), mirrored, or multiworker (TF_CONFIG) (default auto)")
    train.add_argument("--mixed-precision", action="store_true", default=None,
                       help="mixed_float16 on GPU, mixed_bfloat16 on CPU; the output layer stays float32")

    evaluate = add_command(
        commands, "evaluate", common=common, handler=run_evaluate,
        help="RMSE/MAE/correlation of a model on driving logs, next to a mean baseline",
        description="Evaluate a .keras model on driving logs: RMSE, MAE and Pearson correlation against raw and "
        "Gaussian-smoothed labels, error by steering bin, each next to a predict-the-mean baseline; and, when the log "
        "has time stamps and speed, the model's closed-loop autonomy replayed on the log (e2e-drive replay).",
        epilog="examples:\n  e2e-drive evaluate runs/udacity/best.keras ../shared/data/udacity_sim_a --plot eval.png\n"
        "  e2e-drive evaluate runs/b/best.keras data/run2 --camera cam.json --replay-plot replay.png\n"
        "  e2e-drive evaluate runs/donkey/best.keras tub_a --speed 2.0",
    )
    evaluate.add_argument("model", metavar="MODEL", help=".keras model file")
    evaluate.add_argument("data", nargs="+", metavar="DATA", help="Udacity folders/CSVs, tubs or recordings")
    evaluate.add_argument("--smooth-sigma", type=nonnegative_float, default=4.0,
                          help="sigma (frames) of the smoothed labels (default 4)")
    evaluate.add_argument("--batch-size", type=positive_int, default=64, help="prediction batch size (default 64)")
    evaluate.add_argument("--plot", type=output_file, default=None, metavar="OUT.png",
                          help="PNG of predicted vs true steering")
    evaluate.add_argument("--camera", default=None, metavar="CAMERA.json",
                          help="camera calibration for the replay (e2e-drive calibrate); default: the car profile's")
    evaluate.add_argument("--no-replay", action="store_true",
                          help="skip the closed-loop replay (done by default when the log has time stamps and speed)")
    evaluate.add_argument("--speed", type=positive_float, default=None, metavar="M/S",
                          help="speed of the replay for logs without a speed column (donkeycar tubs)")
    evaluate.add_argument("--replay-plot", type=output_file, default=None, metavar="OUT.png",
                          help="PNG of the replay: the path coloured by the car's offset, the interventions, the "
                          "offset and the steering over time (e2e-drive replay --plot)")

    saliency = add_command(
        commands, "saliency", common=common, handler=run_saliency,
        help="VisualBackProp saliency of one frame",
        description="VisualBackProp (Bojarski et al. 2017): which pixels of the frame drive the steering.",
        epilog="example:\n  e2e-drive saliency runs/udacity/best.keras IMG/center_2016_12_01.jpg --out sal.png",
    )
    saliency.add_argument("model", metavar="MODEL", help=".keras model file")
    saliency.add_argument("image", metavar="IMAGE", help="a camera frame (JPEG/PNG)")
    saliency.add_argument("--out", required=True, help="output PNG (frame | overlay | mask)")


def keras_verbosity(args: argparse.Namespace) -> int:
    """Keras' ``verbose``: silent with --quiet, one line per epoch with --json, else progress bars."""
    return 0 if args.quiet else 2 if args.json else 1


def train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``e2e_drive.train.train`` for the flags the user gave (and only those)."""
    options = {keyword: getattr(args, dest) for dest, keyword in TRAIN_OPTIONS.items()
               if getattr(args, dest) is not None}
    if args.augment is False:
        options["augment"] = False
    if options.get("side_correction") == "auto":
        options["side_correction"] = None  # given, and meaning "derive it": kept apart from "not given"
    options["verbose"] = keras_verbosity(args)
    return options


def _val_summary(result) -> str:
    if result.val_rmse is None:
        return "no validation rows (--val-fraction 0)"
    text = f"best val RMSE {result.val_rmse:.4f}"
    throttle = getattr(result, "val_throttle_rmse", None)
    return text + (f" (throttle {throttle:.4f})" if throttle is not None else "")


def _closed_loop_summary(result) -> str:
    check = result.closed_loop
    if not check:
        return ""
    if "skipped" in check:
        return f"\nno closed-loop check of the validation span: {check['skipped']}"
    where = "simulator, track(s) " + ", ".join(map(str, check["tracks"])) if check["by"] == "simulator" else "replay"
    text = (f"\nclosed loop on the validation span ({where}): {check['autonomy']:.1f}% autonomy, "
            f"{check['interventions']} interventions in {check['elapsed_seconds']:.0f} s, mean |offset| "
            f"{check['mean_abs_offset']:.2f} m" + (f" (plot: {check['plot']})" if "plot" in check else ""))
    cost = INTERVENTION_SECONDS / max(check["elapsed_seconds"], 1e-9) * 100
    if cost > SHORT_SPAN_POINTS:  # say how coarse the figure is before anyone trusts it
        text += (f"\n  a short span: one intervention costs {cost:.0f} points of autonomy here (minutes of "
                 "validation driving give a firmer figure: --val-fraction)")
    return text


def run_train(args: argparse.Namespace) -> int:
    from e2e_drive.train import train

    # Keras prints its progress bars on stdout; stdout is reserved for the result (the --json object).
    with contextlib.redirect_stdout(sys.stderr):
        result = train(args.data, args.out, **train_options(args))
    emit(args, result.to_dict(),
         f"run {result.run_dir}: {result.epochs_run} epochs, {_val_summary(result)}, "
         f"{result.train_seconds:.1f} s; best model {result.best_model_path}" + _closed_loop_summary(result))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from e2e_drive.evaluate import evaluate, format_report

    with contextlib.redirect_stdout(sys.stderr):
        report = evaluate(args.model, args.data, smooth_sigma=args.smooth_sigma, batch_size=args.batch_size,
                          plot=args.plot, replay=False if args.no_replay else None, camera=args.camera,
                          speed=args.speed, replay_plot=args.replay_plot)
    emit(args, report, format_report(report))
    return 0


def run_saliency(args: argparse.Namespace) -> int:
    from e2e_drive.saliency import saliency_image

    report = saliency_image(args.model, args.image, args.out)
    emit(args, report, f"wrote {report['out']} (steering {report['steering']:+.3f})")
    return 0
