"""``e2e-drive calibrate`` and ``e2e-drive replay``: closed-loop evaluation on recorded logs (e2e_drive.replay)."""

from __future__ import annotations

import argparse
import logging

from e2e_drive.cli import add_command
from e2e_drive.cli.output import emit
from e2e_drive.cli.types import count, finite_float, output_file, positive_float
from e2e_drive.sim.autonomy import INTERVENTION_SECONDS

log = logging.getLogger(__name__)


def unit_interval(text: str) -> float:
    """A finite number in [0, 1] (a position in a log: --end 1 is its last row)."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return value


def register(commands, common: argparse.ArgumentParser) -> None:
    from e2e_drive.replay.profiles import PROFILES

    cars = tuple(PROFILES)
    calibrate = add_command(
        commands, "calibrate", common=common, handler=run_calibrate,
        help="fit the camera (pitch, focal length, side-camera offset) of a log with left/centre/right frames",
        description="Fit the camera of a three-camera log (Udacity): the horizon row and the side cameras' "
        "offset so that the centre frame, warped as the ground looks from the side cameras, matches the side "
        "frames over the road rows; then the focal length so that each frame warped by the car's recorded "
        "forward motion (speed x time) matches the next. Images fix side offset / height and height x focal: "
        "the height (the metric scale) and the camera's place on the car come from --car. Prints the camera "
        "and the match (correlation of the warped centre frame with each side frame over the road pixels the "
        "centre camera saw, at the model's 66x200 input scale; 1 = identical) next to the unwarped baseline, "
        "and the same match at full resolution.",
        epilog="example:\n  e2e-drive calibrate data/run1 --out camera.json\n"
        "  e2e-drive replay model.keras data/run1 --camera camera.json",
    )
    calibrate.add_argument("log", metavar="LOG", help="Udacity log folder or driving_log.csv with side cameras")
    calibrate.add_argument("--out", metavar="CAMERA.json", help="write the calibration here (JSON)")
    calibrate.add_argument("--car", choices=cars, default=None,
                           help="car profile for the fixed camera figures (default: from the data, as replay)")
    calibrate.add_argument("--frames", type=count(10_000, "frames compared"), default=24,
                           help="frame triples to fit on, spread over the log (default 24)")

    replay = add_command(
        commands, "replay", common=common, handler=run_replay,
        help="closed-loop autonomy of a driver on recorded logs (NVIDIA's PilotNet evaluation)",
        description="Reconstruct each log's path from its time stamps, speed and steering (kinematic bicycle "
        "model), then let DRIVER steer a virtual car that starts on the recorded pose and sees the recorded "
        "frames warped to its own viewpoint (flat-ground homography). Farther than --max-offset from the "
        "recorded path is an intervention: counted, re-centred, driving goes on. "
        f"autonomy = (1 - interventions * {INTERVENTION_SECONDS:g} s / elapsed) * 100. Frames where the car "
        "stands still are skipped and not timed; time gaps split a log into segments.\n\n"
        "DRIVER: a model file (.keras, SavedModel, .onnx, .tflite, TensorRT engine), 'recorded' (the log's "
        "own steering: zero offset, the check) or 'constant:X' (steering X in [-1, 1]).",
        epilog="examples:\n  e2e-drive replay model.keras data/run1 --camera camera.json --video replay.mp4\n"
        "  e2e-drive replay model.keras data/run1 --start 0.8 --plot replay.png\n"
        "  e2e-drive replay recorded data/run1 --json\n"
        "  e2e-drive replay constant:0 data/run1 data/run2 --start 0.5\n"
        "  e2e-drive replay model.onnx data/tub1 --car donkey --speed 2.0 --camera donkey_camera.json",
    )
    replay.add_argument("driver", metavar="DRIVER", help="model file, 'recorded' or 'constant:X'")
    replay.add_argument("logs", metavar="LOG", nargs="+", help="Udacity log folders/CSVs or donkeycar tubs")
    replay.add_argument("--start", type=unit_interval, default=0.0, metavar="F",
                        help="score from this fraction of each log, in [0, 1] (default 0)")
    replay.add_argument("--end", type=unit_interval, default=1.0, metavar="F",
                        help="score up to this fraction of each log, in [0, 1] (default 1)")
    replay.add_argument("--camera", metavar="CAMERA.json",
                        help="camera calibration from e2e-drive calibrate (default: the --car profile's camera, "
                        "with a warning)")
    replay.add_argument("--video", type=output_file, metavar="OUT.mp4",
                        help="write the driver's view with steering and offset")
    replay.add_argument("--plot", type=output_file, metavar="OUT.png",
                        help="PNG per log: the recorded path coloured by the offset, with the interventions; the "
                        "offset and the steering (driver's and recorded) over time")
    replay.add_argument("--car", choices=cars, default=None,
                        help="car profile: wheelbase, wheel angle, speed unit, road width, camera (default: "
                        "sim for `e2e-drive sim record` folders, donkey for tubs, else udacity)")
    replay.add_argument("--speed", type=positive_float, metavar="M/S",
                        help="speed in metres per second, for logs without a speed column (tubs)")
    replay.add_argument("--max-offset", type=positive_float, metavar="METRES",
                        help="intervention threshold off the recorded path (default: 0.3 x the profile's road "
                        "width: 2.7 m for udacity, NVIDIA's 1 m on a 3.6 m lane scaled to the road)")


def run_calibrate(args: argparse.Namespace) -> int:
    from data_tools.io import write_json
    from e2e_drive.replay import calibrate

    result = calibrate(args.log, profile=args.car or _default_profile([args.log]), frames=args.frames)
    payload = result.to_json()
    if args.out:
        write_json(args.out, payload)
        payload["out"] = args.out
    camera = payload["camera"]
    motion = "" if result.motion_match is None else f"; next-frame match {result.motion_match:.3f}"
    full = result.side_match_full_resolution
    text = (f"camera: height {camera['height']:g} m, pitch {camera['pitch_deg']:.2f} deg (horizon row "
            f"{camera['horizon_row']:.1f}), focal {camera['focal']:.1f} px, side cameras {camera['side_offset']:.3f} "
            f"m off centre\nside match (correlation at the model's input scale, warped / unwarped): left "
            f"{result.side_match['left']:.3f} / {result.unwarped_match['left']:.3f}, right "
            f"{result.side_match['right']:.3f} / {result.unwarped_match['right']:.3f} on {result.frames} frames "
            f"(full resolution: left {full['left']:.3f}, right {full['right']:.3f}){motion}"
            + (f"\nwrote {args.out}" if args.out else ""))
    emit(args, payload, text)
    return 0


def _default_profile(logs: list[str]) -> str:
    from data_tools import load_log
    from e2e_drive.replay import car_for_log

    return car_for_log(load_log(logs))


def run_replay(args: argparse.Namespace) -> int:
    from e2e_drive.replay import parse_driver, replay

    if args.end <= args.start:
        raise ValueError(f"--end ({args.end:g}) must be greater than --start ({args.start:g})")
    driver = parse_driver(args.driver)
    if isinstance(driver, str) and driver != "recorded":
        from deploy import load_predictor  # TensorFlow / onnxruntime: loaded only for a model driver

        driver = load_predictor(driver)
    report = replay(args.logs, driver, start=args.start, end=args.end, camera=args.camera,
                    profile=args.car or _default_profile(args.logs), speed=args.speed, max_offset=args.max_offset,
                    video=args.video, progress=not args.quiet)
    payload = report.summary()
    if args.video:
        payload["video"] = args.video
    if args.plot:
        from e2e_drive.replay.plot import plot_replay

        plot_replay(report, args.plot, title=f"{args.driver}: closed-loop replay")
        payload["plot"] = args.plot
    lines = [f"{result.source}: autonomy {result.autonomy:.1f}%, {result.interventions} interventions in "
             f"{result.elapsed_seconds:.1f} s, offset mean {result.mean_abs_offset:.2f} m / max "
             f"{result.max_abs_offset:.2f} m, {result.frames} frames" for result in report.logs]
    total = report.total
    if len(report.logs) > 1:
        lines.append(f"all: autonomy {total.autonomy:.1f}%, {total.interventions} interventions in "
                     f"{total.elapsed_seconds:.1f} s, {total.frames} frames")
    lines.append(f"(intervention beyond {report.max_offset:g} m off the recorded path)")
    lines += [f"wrote {payload[key]}" for key in ("video", "plot") if key in payload]
    emit(args, payload, "\n".join(lines))
    return 0
