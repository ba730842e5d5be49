"""CLI: ``e2e-drive sim record``, ``e2e-drive sim drive``, ``e2e-drive demo`` and ``e2e-drive bench sim``."""

from __future__ import annotations

import argparse
import sys

_FORMAT = argparse.RawDescriptionHelpFormatter


def register(groups) -> None:
    record = groups["sim"].add_parser(
        "record",
        help="drive the expert on a generated track and write a Udacity-format log",
        description="Drive the pure-pursuit expert (with drifts and recoveries) on the track generated from "
        "SEED and write driving_log.csv (no header, 7 columns) and IMG/ center/left/right JPEGs.",
        epilog="example:\n  e2e-drive sim record --track 3 --laps 2 --out runs/rec3",
        formatter_class=_FORMAT,
    )
    record.add_argument("--track", type=int, default=0, metavar="SEED", help="track seed (default 0)")
    record.add_argument("--laps", type=float, default=1.0, help="laps to drive (default 1)")
    record.add_argument("--out", required=True, help="output folder")
    record.add_argument("--seed", type=int, default=0, help="seed of the expert's drifts and noise (default 0)")
    record.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    record.set_defaults(handler=run_record)

    drive = groups["sim"].add_parser(
        "drive",
        help="drive closed-loop with a model and report NVIDIA's autonomy metric",
        description="Drive one car per track with MODEL (.keras, .onnx, .tflite) steering from the centre "
        "camera. More than 1 m (scaled to the road width) off the centre line counts an intervention: the "
        "car is put back and goes on. autonomy = (1 - interventions * 6 s / elapsed) * 100.",
        epilog="example:\n  e2e-drive sim drive runs/demo/train/best.keras --track 101 102 --laps 1 --video drive.mp4",
        formatter_class=_FORMAT,
    )
    drive.add_argument("model", help="model file: .keras, .onnx or .tflite")
    drive.add_argument("--track", type=int, nargs="+", default=[101], metavar="SEED",
                       help="track seeds; all cars drive together, batched (default 101)")
    drive.add_argument("--laps", type=float, default=1.0, help="laps per car (default 1)")
    drive.add_argument("--video", help="write an mp4 of the run with the steering overlaid")
    drive.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    drive.set_defaults(handler=run_drive)

    demo = groups["root"].add_parser(
        "demo",
        help="record, train and drive in the embedded simulator",
        description="Record the expert on training tracks, train PilotNet through e2e_drive.train, drive on "
        "unseen tracks, export ONNX, and write summary.json and paths.png into --out.",
        epilog="examples:\n  e2e-drive demo --quick\n  e2e-drive demo --activation prelu --out runs/demo_prelu",
        formatter_class=_FORMAT,
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--quick", action="store_true", help="smoke-test preset: about a minute")
    demo.add_argument("--epochs", type=int, help="training epochs (default: 10, or 6 with --quick)")
    demo.add_argument("--activation", default="elu", help="PilotNet activation: elu (default), prelu, maxout, ...")
    demo.add_argument("--conv", default="keras", help="convolution: keras (default) or reference")
    demo.add_argument("--train-tracks", type=int, nargs="+", metavar="SEED", help="seeds of the tracks to record on")
    demo.add_argument("--test-tracks", type=int, nargs="+", metavar="SEED", help="seeds of the unseen tracks")
    demo.add_argument("--seed", type=int, default=0, help="the one seed of the run (default 0)")
    demo.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    demo.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    demo.set_defaults(handler=run_demo_command)

    bench = groups["bench"].add_parser(
        "sim",
        help="simulator rendering frames/s vs a per-pixel ray cast",
        description="Render frames along a track with the homography renderer and with the naive per-pixel "
        "NumPy ray cast (the baseline), on one core, in the same run.",
        epilog="example:\n  e2e-drive bench sim --frames 2000 --json",
        formatter_class=_FORMAT,
    )
    bench.add_argument("--frames", type=int, default=2000, help="frames for the renderer (default 2000)")
    bench.add_argument("--baseline-frames", type=int, default=20, help="frames for the ray cast (default 20)")
    bench.add_argument("--track", type=int, default=0, metavar="SEED", help="track seed (default 0)")
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bench.set_defaults(handler=run_bench_sim)


def run_record(args: argparse.Namespace) -> int:
    from e2e_drive.cli import emit_json, log
    from e2e_drive.sim.record import record

    result = record(args.track, args.out, laps=args.laps, seed=args.seed)
    payload = {"out": str(result.out), "csv": str(result.csv_path), "rows": result.rows, "images": 3 * result.rows,
               "laps": round(result.laps, 3), "seconds": round(result.seconds, 1),
               "mean_abs_offset": round(result.mean_abs_offset, 3)}
    if args.json:
        emit_json(payload)
    else:
        log(f"wrote {result.rows} rows x 3 cameras to {result.csv_path} "
            f"({result.laps:.2f} laps, mean |offset| {result.mean_abs_offset:.2f} m)")
    return 0


def run_drive(args: argparse.Namespace) -> int:
    from e2e_drive.cli import emit_json
    from e2e_drive.sim.drive import drive, load_predictor

    results = drive(load_predictor(args.model), args.track, laps=args.laps, video=args.video)
    payload = {"model": args.model, "laps": args.laps, "video": args.video,
               "tracks": [r.summary() for r in results]}
    if args.json:
        emit_json(payload)
    else:
        print(f"{'track':>6} {'autonomy %':>10} {'interv.':>7} {'laps':>5} {'mean|off| m':>11} {'seconds':>8}")
        for r in results:
            print(f"{r.track_seed:>6} {r.autonomy:>10.1f} {r.interventions:>7d} {r.laps_completed:>5.2f} "
                  f"{r.mean_abs_offset:>11.2f} {r.elapsed_seconds:>8.1f}")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    from e2e_drive.cli import emit_json
    from e2e_drive.demo import format_table, run_demo

    summary = run_demo(args.out, quick=args.quick, train_tracks=args.train_tracks, test_tracks=args.test_tracks,
                       epochs=args.epochs, activation=args.activation, conv=args.conv, seed=args.seed,
                       export=not args.no_export, verbose=0 if args.json else (1 if sys.stdout.isatty() else 2))
    if args.json:
        emit_json(summary)
    else:
        print(format_table(summary))
        print(f"summary: {args.out}/summary.json, plot: {summary['plot']}")
    return 0


def run_bench_sim(args: argparse.Namespace) -> int:
    from e2e_drive.cli import emit
    from e2e_drive.sim.bench_sim import bench_sim, format_sim_report

    report = bench_sim(frames=args.frames, baseline_frames=args.baseline_frames, track_seed=args.track)
    emit(args.json, report, format_sim_report(report))
    return 0
