"""``e2e-drive export`` and ``e2e-drive serve``: artifacts for the edge and the simulator's drive server."""

from __future__ import annotations

import argparse
import logging

from deploy.export import DEFAULT_THROTTLE, ONNX_OPSETS
from deploy.formats import FORMATS, formats_help
from e2e_drive.cli import add_command
from e2e_drive.cli.output import emit
from e2e_drive.cli.types import count, finite_float, int_range, nonnegative_float, port

log = logging.getLogger(__name__)


def register(commands, common: argparse.ArgumentParser) -> None:
    export = add_command(
        commands, "export", common=common, handler=run_export,
        help=f"export a .keras model ({', '.join(FORMATS)}) with a parity report",
        description="Export MODEL (raw uint8 RGB frames in, steering out; preprocessing inside) and compare the "
        "artifact's steering with Keras on real frames (--calibration, else simulator frames): max/mean abs "
        "difference, op inventory, file size. Written atomically. Exit 1 when parity fails.\n\n" + formats_help(),
        epilog="examples:\n"
        "  e2e-drive export runs/a/best.keras --format onnx --out pilotnet.onnx\n"
        "  e2e-drive export runs/a/best.keras --format tflite-int8 --out pilotnet_int8.tflite "
        "--calibration ../shared/data/udacity_sim_a\n"
        "  e2e-drive export runs/a/best.keras --format tensorrt --out pilotnet.plan --json\n"
        "  e2e-drive export runs/a/best.keras --format donkeycar --out pilot.tflite --throttle 0.25",
    )
    export.add_argument("model", help="the .keras model")
    export.add_argument("--format", required=True, choices=list(FORMATS), help="export format (table above)")
    export.add_argument("--out", required=True, help="artifact path (a directory for saved_model)")
    export.add_argument("--calibration", nargs="+", metavar="DATA",
                        help="Udacity log / tub / image folder: parity frames and int8 calibration")
    export.add_argument("--opset", type=int_range(*ONNX_OPSETS), default=17,
                        help=f"ONNX opset, {ONNX_OPSETS[0]}..{ONNX_OPSETS[1]} (default 17)")
    export.add_argument("--throttle", type=throttle_value, default=DEFAULT_THROTTLE,
                        help="donkeycar: the constant throttle a steering-only model answers, in [-1, 1] "
                        f"(default {DEFAULT_THROTTLE}; a model with a throttle head answers its own)")
    export.add_argument("--frames", type=count(10_000, "frames held in memory"), default=64,
                        help="parity/calibration frames (default 64)")
    export.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                        help="TensorRT engine precision (default fp16)")
    export.add_argument("--no-fold", action="store_true",
                        help="keep the colour conversion as its own ops instead of folding it into the first "
                             "convolution (faster; parity is checked against the unfolded model either way)")

    serve = add_command(
        commands, "serve", common=common, handler=run_serve,
        help="drive the Udacity simulator (socket.io) with any artifact",
        description="Serve MODEL (.keras, SavedModel, .onnx, .tflite, TensorRT engine) with the Udacity "
        "simulator's socket.io protocol: telemetry in, steer out (PI speed controller for the throttle), "
        "manual for empty telemetry, error for malformed messages. Engine.IO 3 clients (EIO=3: Socket.IO "
        "1.x/2.x, such as python-socketio 4 and older simulator builds) and Engine.IO 4 clients (EIO=4: the "
        "Udacity Unity simulator as it ships, Socket.IO 3+) are answered on the same port, over WebSocket or "
        "long-polling. Oversized messages and malformed telemetry get an error event; the server keeps "
        "serving. Ctrl-C stops.",
        epilog="examples:\n  e2e-drive serve pilotnet.onnx --port 4567 --speed 20\n"
        "  e2e-drive serve runs/a/best.keras --host 0.0.0.0     # reachable from another machine",
    )
    serve.add_argument("model", help="the artifact to drive with")
    serve.add_argument("--port", type=port, default=4567, help="port, 1..65535 (default 4567, the simulator's)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--speed", type=nonnegative_float, default=20.0,
                       help="target speed of the PI controller, >= 0 (default 20)")
    serve.add_argument("--throttle", choices=("model", "controller"), default="model",
                       help="model: a model with a throttle head drives its own speed (others use the controller); "
                       "controller: always the PI controller (default model)")


def throttle_value(text: str) -> float:
    value = finite_float(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a throttle in [-1, 1], got {text}")
    return value


def run_export(args: argparse.Namespace) -> int:
    from deploy import export

    report = export(args.model, args.format, args.out, calibration=args.calibration, opset=args.opset,
                    parity_frames=args.frames, trt_precision=args.precision, fold=not args.no_fold,
                    throttle=args.throttle)
    emit(args, report.to_dict(), report.summary())
    return 0 if report.passed else 1


def run_serve(args: argparse.Namespace) -> int:
    from deploy import load_predictor
    from deploy.server import DriveServer

    predictor = load_predictor(args.model)
    server = DriveServer(predictor, speed=args.speed, host=args.host, port=args.port, throttle=args.throttle)
    server.serve_forever()
    return 0
