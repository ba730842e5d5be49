"""``e2e-drive bench ...``: every benchmark, each against a baseline measured in the same run.

The benchmark code lives in ``e2e_drive.bench``; each handler imports its module itself, so a benchmark whose
optional dependency is missing fails alone.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from e2e_drive.cli import add_command
from e2e_drive.cli.output import emit
from e2e_drive.cli.train import add_config_options
from e2e_drive.cli.types import batch_size, bounded_float, count, fraction, seed
from e2e_drive.options import RECIPE

# The benchmark's own protocol: its seeds and the data it is given.
BENCH_DECIDES = ("seed", "data")

# What one benchmark may be asked to time: bounded so that a typo costs seconds, not hours or all the memory.
steps = count(10_000, "timed steps")
frames = count(100_000, "timed frames")
workers = count(64, "parallel workers")
repeats = count(100, "repetitions")


def _bench(commands, common, name: str, handler, **text) -> argparse.ArgumentParser:
    return add_command(commands, name, group_name="bench", common=common, handler=handler, **text)


def register(commands, common: argparse.ArgumentParser) -> None:
    layers = _bench(
        commands, common, "layers", run_layers,
        help="train-step time of each custom layer vs its Keras built-in",
        description="Forward+backward step time of Maxout, PReLU, ELU and ReferenceConv2D inside a small "
        "conv net, against the built-in (or equivalent composition) measured in the same run.",
        epilog="example:\n  e2e-drive bench layers --batch 64 --steps 10 --json",
    )
    layers.add_argument("--batch", type=batch_size, default=64, help="batch size (default 64)")
    layers.add_argument("--steps", type=steps, default=10, help="timed steps per model (default 10)")

    train = _bench(
        commands, common, "train", run_train,
        help="training throughput: DrivingDataset vs in-memory tensors, and each PilotNet variant",
        description="Training images/s fed from DrivingDataset (memory cache + augmentation) vs from in-memory "
        "tensors, and the train-step time of every activation/conv variant relative to ELU + Keras conv, "
        "all measured in the same run on synthetic 160x320 frames.",
        epilog="example:\n  e2e-drive bench train --steps 10 --batch 32 --json",
    )
    train.add_argument("--batch", type=batch_size, default=32, help="batch size (default 32)")
    train.add_argument("--steps", type=steps, default=10, help="timed steps per measurement (default 10)")
    train.add_argument("--variants", default="all", help="comma-separated activation[:conv] list, or 'all'")

    pipeline = _bench(
        commands, common, "pipeline", run_pipeline,
        help="augmented images/s of DrivingDataset vs the naive imread-per-sample generator",
        description="Augmented images per second: the usual single-process imread-and-augment generator "
        "(baseline, measured in the same run) against DrivingDataset with its frame cache, with 1 worker and with "
        "worker threads and processes; plus PilotNet's in-memory training img/s.",
        epilog="examples:\n  e2e-drive bench pipeline ../shared/data/udacity_sim_a --batches 40 --workers 2\n"
        "  e2e-drive bench pipeline ../shared/data/udacity_sim_a --json > pipeline.json",
    )
    pipeline.add_argument("paths", nargs="+", metavar="PATH", help="driving log folders, CSV files or tubs")
    pipeline.add_argument("--batches", type=steps, default=40,
                          help="batches per measurement, one epoch; a smaller log is tiled (default 40)")
    pipeline.add_argument("--batch-size", type=batch_size, default=64, help="samples per batch (default 64)")
    pipeline.add_argument("--workers", type=workers, default=2, help="worker threads/processes (default 2)")
    pipeline.add_argument("--repeats", type=repeats, default=3,
                          help="interleaved repetitions, median reported (default 3)")
    pipeline.add_argument("--no-processes", action="store_true", help="skip the worker-process measurement")
    pipeline.add_argument("--no-model", action="store_true", help="skip the PilotNet training measurement")
    pipeline.add_argument("--seed", type=seed, default=0, help="seed (default 0)")

    sim = _bench(
        commands, common, "sim", run_sim,
        help="simulator rendering frames/s vs a per-pixel ray cast",
        description="Render frames along a track with the homography renderer and with the naive per-pixel "
        "NumPy ray cast (the baseline), on one core, in the same run.",
        epilog="example:\n  e2e-drive bench sim --frames 2000 --json",
    )
    sim.add_argument("--frames", type=frames, default=2000, help="frames for the renderer (default 2000)")
    sim.add_argument("--baseline-frames", type=steps, default=20, help="frames for the ray cast (default 20)")
    sim.add_argument("--track", type=seed, default=0, metavar="SEED", help="track seed (default 0)")

    latency = _bench(
        commands, common, "latency", run_latency,
        help="batch-1 p50/p99 and batch-32 throughput per artifact, against a CPU floor",
        description="Time each ARTIFACT on the same frames in one run: batch-1 latency p50/p99, throughput at "
        "batch 32, ratio to the first artifact, and the ONNX latency as a multiple of the CPU floor "
        "(model MACs / onnxruntime matmul rate measured in the same run).",
        epilog="example:\n"
        "  e2e-drive bench latency best.keras pilotnet.onnx pilotnet.tflite pilotnet_int8.tflite --json",
    )
    latency.add_argument("artifacts", nargs="+", metavar="ARTIFACT")
    latency.add_argument("--runs", type=frames, default=200, help="batch-1 calls per artifact (default 200)")
    latency.add_argument("--batch", type=batch_size, default=32, help="throughput batch size (default 32)")

    serve = _bench(
        commands, common, "serve", run_serve,
        help="load-test the drive server: several socket.io clients, a fixed number of frames each",
        description="Start the drive server with MODEL on a free local port and drive it with --clients real "
        "socket.io clients sending --frames telemetry messages each (simulator frames); round-trip p50/p99 "
        "and frames/s, next to the model's own batch-1 latency measured in the same run.",
        epilog="example:\n  e2e-drive bench serve pilotnet.onnx --clients 4 --frames 100 --json",
    )
    serve.add_argument("model")
    serve.add_argument("--clients", type=workers, default=4, help="parallel clients (default 4)")
    serve.add_argument("--frames", type=frames, default=50, help="frames per client (default 50)")
    serve.add_argument("--transport", choices=("websocket", "polling"), default="websocket",
                       help="socket.io transport (default websocket)")

    replay = _bench(
        commands, common, "replay", run_replay,
        help="closed-loop replay steps/s on a recorded log, against decode+warp and the simulator's render step",
        description="Replay a generated log with a zero-steering driver (JPEG decoding, viewpoint warp, car model, "
        "path projection, interventions: everything but the model) on one core, next to baselines measured in "
        "the same run on the same frames: JPEG decoding plus one cv2.warpPerspective per step, and the "
        "simulator's own render step.",
        epilog="example:\n  e2e-drive bench replay --steps 2000 --json",
    )
    replay.add_argument("--steps", type=frames, default=2000, help="time steps to replay (default 2000)")

    cli = _bench(
        commands, common, "cli", run_cli,
        help="start-up time of the console script (--help, --version, ...) vs python -c pass",
        description="Wall time of `e2e-drive --help`, `--version`, `train --help` and a `data check` of a missing "
        "path, each a fresh interpreter, next to `python -c pass` measured in the same run (medians), and which "
        "heavy modules (TensorFlow, Keras, OpenCV, SciPy...) each loaded.",
        epilog="example:\n  e2e-drive bench cli --repeats 5 --json",
    )
    cli.add_argument("--repeats", type=repeats, default=5, help="runs of each command (default 5)")

    recipe = _bench(
        commands, common, "recipe", run_recipe,
        help="the default training recipe across logs and seeds: held-out replay autonomy, Pearson, worst case",
        description="For every LOG (and every --sim driver) and seed: train with the shipped defaults on the "
        "first part of each recording, then score best.keras on the held-out last part it never saw: closed-loop "
        "replay autonomy and interventions per minute, Pearson and RMSE (as a multiple of the mean predictor's) "
        "against the smoothed labels, and for simulator drivers the simulator's own closed loop on an unseen "
        "track. Per log and in all, mean and worst: the worst log and seed is the figure that counts.",
        epilog="examples:\n  e2e-drive bench recipe ../shared/data/udacity_sim_a ../shared/data/udacity_sim_b "
        "--seeds 3\n  e2e-drive bench recipe --sim keyboard@10 analog@13 late@15 joystick@20 --json\n"
        "  e2e-drive bench recipe LOG --epochs 2 --epoch-samples 2000   # a quick run (reported as changed)\n"
        "  e2e-drive bench recipe TUB --speed 1.5 --crop 45,0   # a candidate recipe change, against the defaults",
    )
    recipe.add_argument("logs", nargs="*", metavar="LOG", help="driving log folders, CSV files or tubs")
    recipe.add_argument("--sim", nargs="+", default=[], metavar="DRIVER[@FPS]",
                        help="simulator recordings to make and score: a driving style of `e2e-drive sim record "
                        "--driver` at a frame rate, e.g. keyboard@13")
    recipe.add_argument("--sim-laps", type=bounded_float(20.0, "simulator laps recorded"), default=3.0,
                        help="laps of each simulator recording (default 3)")
    recipe.add_argument("--seeds", type=count(20, "training runs per log"), default=1,
                        help="seeds 0..N-1 per log (default 1)")
    recipe.add_argument("--held-out", type=fraction, default=0.2,
                        help="last fraction of each recording kept from training and scored (default 0.2)")
    # Every recipe option of train (and --epochs): a candidate change is benchmarked by the command that makes it.
    recipe.set_defaults(recipe_options=add_config_options(recipe, only=_recipe_option))
    recipe.add_argument("--out", help="keep the recordings and run folders here (default: a temporary folder)")

    gpu = _bench(
        commands, common, "gpu", run_gpu,
        help="GPU figures: train steps vs CPU and mixed precision, TensorRT engines, the input pipeline",
        description="PilotNet train steps/s on the GPU vs the CPU and with mixed_float16 vs float32; TensorRT "
        "engines (fp32, fp16, int8) vs Keras on the same GPU; DrivingDataset images/s with one worker vs worker "
        "processes. Without a GPU (or TensorRT) the report says why and holds what this machine can measure.",
        epilog="example:\n  e2e-drive bench gpu --steps 20 --json",
    )
    gpu.add_argument("--steps", type=steps, default=20,
                     help="timed train steps per configuration (default 20)")


def _recipe_option(name: str, declaration) -> bool:
    return name == "epochs" or (declaration.section == RECIPE and name not in BENCH_DECIDES)


def run_recipe(args: argparse.Namespace) -> int:
    from e2e_drive.bench.recipe import bench_recipe, format_recipe_report, parse_sim

    sims = [parse_sim(text, laps=args.sim_laps) for text in args.sim]
    # add_config_options leaves the flags not given off the namespace: these are the changes to the recipe.
    overrides = {name: getattr(args, name) for name in args.recipe_options if hasattr(args, name)}
    with contextlib.redirect_stdout(sys.stderr):  # Keras writes to stdout
        report = bench_recipe(args.logs, sims=sims, seeds=args.seeds, held_out=args.held_out, out=args.out,
                              progress=not args.quiet, **overrides)
    emit(args, report, format_recipe_report(report))
    return 0


def run_layers(args: argparse.Namespace) -> int:
    from e2e_drive.bench.layers import bench_layers, format_layers_report

    report = bench_layers(batch_size=args.batch, steps=args.steps)
    emit(args, report, format_layers_report(report))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from e2e_drive.bench.train import bench_train, format_train_report

    with contextlib.redirect_stdout(sys.stderr):  # Keras writes to stdout
        report = bench_train(batch_size=args.batch, steps=args.steps, variants=args.variants)
    emit(args, report, format_train_report(report))
    return 0


def run_pipeline(args: argparse.Namespace) -> int:
    from e2e_drive.bench.pipeline import bench_pipeline, format_pipeline_report

    report = bench_pipeline(args.paths, batches=args.batches, batch_size=args.batch_size, workers=args.workers,
                            repeats=args.repeats, processes=not args.no_processes, model=not args.no_model,
                            seed=args.seed)
    emit(args, report, format_pipeline_report(report))
    return 0


def run_sim(args: argparse.Namespace) -> int:
    from e2e_drive.bench.sim import bench_sim, format_sim_report

    report = bench_sim(frames=args.frames, baseline_frames=args.baseline_frames, track_seed=args.track)
    emit(args, report, format_sim_report(report))
    return 0


def run_latency(args: argparse.Namespace) -> int:
    from e2e_drive.bench.latency import bench_latency, format_latency

    report = bench_latency(args.artifacts, runs=args.runs, batch=args.batch)
    emit(args, report, format_latency(report))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from e2e_drive.bench.serve import bench_serve, format_serve_report

    report = bench_serve(args.model, clients=args.clients, frames=args.frames, transport=args.transport)
    emit(args, report, format_serve_report(report))
    return 0 if not report["failures"] else 1


def run_replay(args: argparse.Namespace) -> int:
    from e2e_drive.bench.replay import bench_replay, format_replay_report

    report = bench_replay(steps=args.steps)
    emit(args, report, format_replay_report(report))
    return 0


def run_cli(args: argparse.Namespace) -> int:
    from e2e_drive.bench.cli import bench_cli, format_cli_report

    report = bench_cli(repeats=args.repeats)
    emit(args, report, format_cli_report(report))
    return 0


def run_gpu(args: argparse.Namespace) -> int:
    from e2e_drive.bench.gpu import bench_gpu, format_gpu_report

    with contextlib.redirect_stdout(sys.stderr):  # Keras writes to stdout
        report = bench_gpu(steps=args.steps)
    emit(args, report, format_gpu_report(report))
    return 0
