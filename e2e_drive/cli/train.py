"""``e2e-drive train``, ``e2e-drive evaluate`` and ``e2e-drive saliency``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any, Callable

from e2e_drive.cli import add_command
from e2e_drive.cli.output import emit
from e2e_drive.cli.types import batch_size, nonnegative_float, output_file, positive_float
from e2e_drive.options import Boolean, declared, flag_of, show
from e2e_drive.train_config import TrainConfig

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

def add_config_options(parser: argparse.ArgumentParser, config_class: type = TrainConfig,
                       only: Callable[[str, Any], bool] | None = None) -> list[str]:
    """One flag per declared option of ``config_class`` (``option(..., cli=True)``), with its help and default;
    ``only(name, declaration)`` picks a subset (``e2e-drive bench recipe`` takes the recipe's options). Returns the
    names of the options added.

    Flags the user does not give stay off the namespace (``argparse.SUPPRESS``), so that a resumed run can tell a
    changed setting from a default (``train_options``)."""
    added = []
    for name, (field, declaration) in declared(config_class).items():
        if not declaration.cli or (only is not None and not only(name, declaration)):
            continue
        check = declaration.check
        kwargs: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS)
        if isinstance(check, Boolean) or declaration.negate:
            kwargs["action"] = "store_false" if declaration.negate else "store_true"
            help_text = declaration.help
        else:
            if check is not None and check.choices is not None:
                kwargs["choices"] = check.choices
            elif check is not None:
                kwargs["type"] = _argparse_type(check)
            if declaration.metavar or "choices" not in kwargs:
                kwargs["metavar"] = declaration.metavar or flag_of(name, declaration).lstrip("-").replace("-", "_").upper()
            default = declaration.default_text
            help_text = f"{declaration.help} (default{': ' + default if default else ' ' + show(field.default)})"
        parser.add_argument(flag_of(name, declaration), help=help_text.replace("%", "%%"), **kwargs)
        added.append(name)
    return added


def _argparse_type(check):
    """An argparse type from a declared option's check (its text parser; argparse names the flag)."""

    def convert(text: str):
        try:
            return check.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = type(check).__name__.lower()
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
    add_config_options(train)
    train.add_argument("--resume", action="store_true", default=argparse.SUPPRESS,
                       help="continue the run in --out from last.keras")
    train.add_argument("--overwrite", action="store_true", default=argparse.SUPPRESS,
                       help="replace a finished run in --out instead of refusing")

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
    evaluate.add_argument("--batch-size", type=batch_size, default=64, help="prediction batch size (default 64)")
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
    names = [n for n, (_, d) in declared(TrainConfig).items() if d.cli] + ["resume", "overwrite"]
    options = {name: getattr(args, name) for name in names if hasattr(args, name)}
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
    if check["too_short"]:  # say how coarse the figure is before anyone trusts it
        text += (f"\n  a short span: one intervention costs {check['points_per_intervention']:.0f} points of autonomy "
                 "here (minutes of validation driving give a firmer figure: --val-fraction)")
    if check.get("strict"):
        from e2e_drive.closed_loop import strict_warning

        text += f"\n  {strict_warning(check)}"
    return text


def _time_split_summary(result) -> str:
    if not result.time_split:
        return ""
    from e2e_drive.time_split import format_time_split

    return f"\n{format_time_split(result.time_split)} (time_split.json)"


def run_train(args: argparse.Namespace) -> int:
    from e2e_drive.train import train

    # Keras prints its progress bars on stdout; stdout is reserved for the result (the --json object).
    with contextlib.redirect_stdout(sys.stderr):
        result = train(args.data, args.out, **train_options(args))
    emit(args, result.to_dict(),
         f"run {result.run_dir}: {result.epochs_run} epochs, {_val_summary(result)}, "
         f"{result.train_seconds:.1f} s; best model {result.best_model_path}" + _closed_loop_summary(result)
         + _time_split_summary(result))
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
