"""``e2e-drive sim record``, ``e2e-drive sim drive`` and ``e2e-drive demo``: the embedded simulator."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from e2e_drive.cli import add_command
from e2e_drive.cli.output import emit
from e2e_drive.cli.types import bounded_float, count, output_file, seed
from e2e_drive.models import ACTIVATIONS, CONVS
from e2e_drive.sim.car import CarParams
from e2e_drive.sim.driver_style import STYLES
from e2e_drive.sim.autonomy import INTERVENTION_SECONDS
from e2e_drive.sim.track import INTERVENTION_FRACTION

log = logging.getLogger(__name__)

LAP_LIMIT, EPOCH_LIMIT, FPS_LIMIT, SPEED_LIMIT = 100.0, 1000, 120.0, 30.0


def register(commands, common: argparse.ArgumentParser) -> None:
    record = add_command(
        commands, "record", group_name="sim", common=common, handler=run_record,
        help="drive the expert on a generated track and write a Udacity log or a donkeycar tub",
        description="Drive the pure-pursuit expert (with drifts and recoveries) on the track generated from "
        "SEED and write what it sees: --format udacity writes driving_log.csv (no header, 7 columns) and IMG/ "
        "center/left/right JPEGs; --format tub writes a donkeycar tub v2 (manifest.json, catalogs, images/).",
        epilog="examples:\n  e2e-drive sim record --track 3 --laps 2 --out runs/rec3\n"
        "  e2e-drive sim record --track 4 --out runs/tub4 --format tub\n"
        "  e2e-drive sim record --track 5 --out runs/kb5 --driver keyboard --fps 13 --speed 10\n\n"
        "driving styles (--driver):\n" + "\n".join(f"  {s.name:<9} {s.description}" for s in STYLES.values()),
    )
    record.add_argument("--track", type=seed, default=0, metavar="SEED", help="track seed (default 0)")
    record.add_argument("--laps", type=bounded_float(LAP_LIMIT, "frames written to disk"), default=1.0,
                        help=f"laps to drive, in (0, {LAP_LIMIT}] (default 1)")
    record.add_argument("--out", required=True, help="output folder")
    record.add_argument("--seed", type=seed, default=0, help="seed of the expert's drifts and noise (default 0)")
    record.add_argument("--format", choices=("udacity", "tub"), default="udacity",
                        help="udacity (driving_log.csv + IMG/) or tub (donkeycar tub v2) (default udacity)")
    record.add_argument("--driver", choices=tuple(STYLES), default="expert",
                        help="driving style: what the log records (see below; default expert)")
    record.add_argument("--fps", type=bounded_float(FPS_LIMIT, "frames per simulated second"), default=10.0,
                        help=f"frames per second, in (0, {FPS_LIMIT:g}] (default 10; the Udacity simulator "
                        "records 10-15, donkeycar 20)")
    record.add_argument("--speed", type=bounded_float(SPEED_LIMIT, "metres per second"), default=CarParams().speed,
                        help=f"cruising speed in m/s, in (0, {SPEED_LIMIT:g}] (default {CarParams().speed:g})")

    drive = add_command(
        commands, "drive", group_name="sim", common=common, handler=run_drive,
        help="drive closed-loop with a model and report NVIDIA's autonomy metric",
        description=f"Drive one car per track with MODEL (.keras, SavedModel, .onnx, .tflite, TensorRT engine) "
        f"steering from the centre camera. A car farther than {INTERVENTION_FRACTION:g} x the road width from "
        f"the centre line (NVIDIA's 1 m off centre on a 3.6 m lane, scaled to the generated road) counts an "
        f"intervention: it is put back on the centre line and goes on. "
        f"autonomy = (1 - interventions * {INTERVENTION_SECONDS:g} s / elapsed) * 100.",
        epilog="examples:\n"
        "  e2e-drive sim drive runs/demo/train/best.keras --track 101 102 --laps 1 --video drive.mp4\n"
        "  e2e-drive sim drive runs/demo/pilotnet.onnx --track 101 102 103 --plot paths.png",
    )
    drive.add_argument("model", help="model file: .keras, SavedModel folder, .onnx, .tflite or TensorRT engine")
    drive.add_argument("--track", type=seed, nargs="+", default=[101], metavar="SEED",
                       help="track seeds; all cars drive together, batched (default 101)")
    drive.add_argument("--laps", type=bounded_float(LAP_LIMIT, "simulated time"), default=1.0,
                       help=f"laps per car, in (0, {LAP_LIMIT}] (default 1)")
    drive.add_argument("--video", type=output_file, metavar="OUT.mp4",
                       help="write an mp4 of the run with the steering overlaid")
    drive.add_argument("--plot", type=output_file, metavar="OUT.png",
                       help="PNG of each driven path over its track map, with the interventions")

    demo = add_command(
        commands, "demo", common=common, handler=run_demo,
        help="record, train and drive in the embedded simulator",
        description="Record the expert on training tracks, train PilotNet through e2e_drive.train, drive on "
        "unseen tracks, export ONNX, and write summary.json and paths.png into --out.",
        epilog="examples:\n  e2e-drive demo --quick\n  e2e-drive demo --activation prelu --out runs/demo_prelu",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--quick", action="store_true", help="smoke-test preset: under a minute")
    demo.add_argument("--epochs", type=count(EPOCH_LIMIT, "training epochs"),
                      help="training epochs (default: 10, or 6 with --quick)")
    demo.add_argument("--activation", choices=ACTIVATIONS, default="elu", help="PilotNet activation (default elu)")
    demo.add_argument("--conv", choices=CONVS, default="keras", help="convolution (default keras)")
    demo.add_argument("--train-tracks", type=seed, nargs="+", metavar="SEED", help="seeds of the tracks to record on")
    demo.add_argument("--test-tracks", type=seed, nargs="+", metavar="SEED", help="seeds of the unseen tracks")
    demo.add_argument("--seed", type=seed, default=0, help="the one seed of the run (default 0)")
    demo.add_argument("--no-export", action="store_true", help="skip the ONNX export")


def run_record(args: argparse.Namespace) -> int:
    from e2e_drive.sim import record

    result = record(args.track, args.out, laps=args.laps, seed=args.seed, format=args.format,
                    driver=args.driver, fps=args.fps, params=CarParams(speed=args.speed), progress=not args.quiet)
    written = getattr(result, "csv_path", None) or result.out
    cameras = 1 if args.format == "tub" else 3  # a tub holds the centre camera only
    payload = {"out": str(result.out), "format": args.format, "driver": args.driver, "fps": args.fps,
               "rows": result.rows, "images": cameras * result.rows,
               "laps": round(result.laps, 3), "seconds": round(result.seconds, 1),
               "mean_abs_offset": round(result.mean_abs_offset, 3)}
    if getattr(result, "csv_path", None) is not None:
        payload["csv"] = str(result.csv_path)
    emit(args, payload, f"wrote {result.rows} rows x {cameras} camera{'s' if cameras > 1 else ''} to {written} "
                        f"({result.laps:.2f} laps, mean |offset| {result.mean_abs_offset:.2f} m)")
    return 0


def run_drive(args: argparse.Namespace) -> int:
    from deploy import load_predictor
    from e2e_drive.sim import drive

    results = drive(load_predictor(args.model), args.track, laps=args.laps, video=args.video,
                    progress=not args.quiet)
    if args.plot:
        from e2e_drive.sim.plot import plot_paths

        plot_paths(results, args.plot)
    lines = [f"{'track':>6} {'autonomy %':>10} {'interv.':>7} {'laps':>5} {'mean|off| m':>11} {'seconds':>8}"]
    for r in results:
        lines.append(f"{r.track_seed:>6} {r.autonomy:>10.1f} {r.interventions:>7d} {r.laps_completed:>5.2f} "
                     f"{r.mean_abs_offset:>11.2f} {r.elapsed_seconds:>8.1f}")
    emit(args, {"model": args.model, "laps": args.laps, "video": args.video, "plot": args.plot,
                "tracks": [r.summary() for r in results]},
         "\n".join(lines + [f"wrote {path}" for path in (args.video, args.plot) if path]))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from e2e_drive.demo import format_table, run_demo as demo

    verbose = 0 if args.quiet else 2 if args.json or not sys.stderr.isatty() else 1
    # Keras prints its progress bars on stdout; stdout is reserved for the result.
    with contextlib.redirect_stdout(sys.stderr):
        summary = demo(args.out, quick=args.quick, train_tracks=args.train_tracks, test_tracks=args.test_tracks,
                       epochs=args.epochs, activation=args.activation, conv=args.conv, seed=args.seed,
                       export=not args.no_export, verbose=verbose, progress=not args.quiet)
    emit(args, summary, format_table(summary) + f"\nsummary: {args.out}/summary.json, plot: {summary['plot']}")
    return 0
