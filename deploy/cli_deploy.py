"""CLI: ``e2e-drive export``, ``e2e-drive serve``, ``e2e-drive bench latency`` and ``e2e-drive bench serve``."""

from __future__ import annotations

import argparse

from deploy.formats import FORMATS, formats_help

_FORMAT = argparse.RawDescriptionHelpFormatter


def register(groups) -> None:
    export = groups["root"].add_parser(
        "export",
        help="export a .keras model (SavedModel, ONNX, TFLite fp32/fp16/int8, TensorRT) with a parity report",
        description="Export MODEL (raw uint8 RGB frames in, steering out; preprocessing inside) and compare the "
        "artifact's steering with Keras on real frames (--calibration, else simulator frames): max/mean abs "
        "difference, op inventory, file size. Written atomically. Exit 1 when parity fails.\n\n" + formats_help(),
        epilog="examples:\n"
        "  e2e-drive export runs/a/best.keras --format onnx --out pilotnet.onnx\n"
        "  e2e-drive export runs/a/best.keras --format tflite-int8 --out pilotnet_int8.tflite "
        "--calibration ../shared/data/udacity_sim_a\n"
        "  e2e-drive export runs/a/best.keras --format tensorrt --out pilotnet.plan --json",
        formatter_class=_FORMAT,
    )
    export.add_argument("model", help="the .keras model")
    export.add_argument("--format", required=True, choices=list(FORMATS), help="export format (table above)")
    export.add_argument("--out", required=True, help="artifact path (a directory for saved_model)")
    export.add_argument("--calibration", nargs="+", metavar="DATA",
                        help="Udacity log / tub / image folder: parity frames and int8 calibration")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--frames", type=int, default=64, help="parity/calibration frames (default 64)")
    export.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                        help="TensorRT engine precision (default fp16)")
    export.add_argument("--no-fold", action="store_true",
                        help="keep the colour conversion as its own ops instead of folding it into the first "
                             "convolution (faster; parity is checked against the unfolded model either way)")
    export.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    export.set_defaults(handler=run_export)

    serve = groups["root"].add_parser(
        "serve",
        help="drive the Udacity simulator (socket.io) with any artifact",
        description="Serve MODEL (.keras, SavedModel, .onnx, .tflite, TensorRT engine) with the Udacity "
        "simulator's socket.io protocol: telemetry in, steer out (PI speed controller for the throttle), "
        "manual for empty telemetry, error for malformed messages. Engine.IO 4 clients (EIO=4; Socket.IO 3+) "
        "over WebSocket or long-polling; an EIO=3 client (the Unity simulator) gets a 400 with the reason.",
        epilog="example:\n  e2e-drive serve pilotnet.onnx --port 4567 --speed 20",
        formatter_class=_FORMAT,
    )
    serve.add_argument("model", help="the artifact to drive with")
    serve.add_argument("--port", type=int, default=4567, help="port (default 4567, the simulator's)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--speed", type=float, default=20.0, help="target speed of the PI controller (default 20)")
    serve.set_defaults(handler=run_serve)

    latency = groups["bench"].add_parser(
        "latency",
        help="batch-1 p50/p99 and batch-32 throughput per artifact, against a CPU floor",
        description="Time each ARTIFACT on the same frames in one run: batch-1 latency p50/p99, throughput at "
        "batch 32, ratio to the first artifact, and the ONNX latency as a multiple of the CPU floor "
        "(model MACs / onnxruntime matmul rate measured in the same run).",
        epilog="example:\n  e2e-drive bench latency best.keras pilotnet.onnx pilotnet.tflite pilotnet_int8.tflite --json",
        formatter_class=_FORMAT,
    )
    latency.add_argument("artifacts", nargs="+", metavar="ARTIFACT")
    latency.add_argument("--runs", type=int, default=200, help="batch-1 calls per artifact (default 200)")
    latency.add_argument("--batch", type=int, default=32, help="throughput batch size (default 32)")
    latency.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    latency.set_defaults(handler=run_latency)

    serve_bench = groups["bench"].add_parser(
        "serve",
        help="load-test the drive server: several socket.io clients, a fixed number of frames each",
        description="Start the drive server with MODEL on a free local port and drive it with --clients real "
        "socket.io clients sending --frames telemetry messages each (simulator frames); round-trip p50/p99 "
        "and frames/s, next to the model's own batch-1 latency measured in the same run.",
        epilog="example:\n  e2e-drive bench serve pilotnet.onnx --clients 4 --frames 100 --json",
        formatter_class=_FORMAT,
    )
    serve_bench.add_argument("model")
    serve_bench.add_argument("--clients", type=int, default=4, help="parallel clients (default 4)")
    serve_bench.add_argument("--frames", type=int, default=50, help="frames per client (default 50)")
    serve_bench.add_argument("--transport", choices=("websocket", "polling"), default="websocket",
                             help="socket.io transport (default websocket)")
    serve_bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    serve_bench.set_defaults(handler=run_bench_serve)


def run_export(args) -> int:
    from deploy.export import export
    from e2e_drive.cli import emit_json, log

    report = export(args.model, args.format, args.out, calibration=args.calibration, opset=args.opset,
                    parity_frames=args.frames, trt_precision=args.precision, fold=not args.no_fold)
    log(report.summary())
    if args.json:
        emit_json(report.to_dict())
    return 0 if report.passed else 1


def run_serve(args) -> int:
    from deploy.predictor import load_predictor
    from deploy.server import DriveServer

    server = DriveServer(load_predictor(args.model), speed=args.speed, host=args.host, port=args.port)
    server.serve_forever()
    return 0


def run_latency(args) -> int:
    from deploy.latency import bench_latency, format_latency
    from e2e_drive.cli import emit_json

    report = bench_latency(args.artifacts, runs=args.runs, batch=args.batch)
    print(format_latency(report), flush=True) if not args.json else emit_json(report)
    return 0


def run_bench_serve(args) -> int:
    from deploy.server import bench_serve
    from e2e_drive.cli import emit_json

    result = bench_serve(args.model, clients=args.clients, frames=args.frames, transport=args.transport)
    if args.json:
        emit_json(result)
    else:
        print(f"{args.clients} clients x {args.frames} frames ({args.transport}): {result['answered']} answered, "
              f"round trip p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
              f"{result['frames_per_second']:.1f} frames/s; model alone p50 {result['model_p50_ms']:.3f} ms "
              f"(round trip = {result['overhead_x']:.1f}x the model)")
        for failure in result["failures"]:
            print(f"  failure: {failure}")
    return 0 if not result["failures"] else 1
