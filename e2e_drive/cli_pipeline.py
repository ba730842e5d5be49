"""``e2e-drive data preview`` and ``e2e-drive bench pipeline``: the input pipeline's commands."""

from __future__ import annotations

import argparse

from e2e_drive.cli import CommandError, emit, emit_json, log

PREVIEW_EPILOG = """example:
  e2e-drive data preview ../shared/data/udacity_sim_a --out grid.png --n 16 --seed 0
  e2e-drive data preview ../shared/data/donkey_tub_a --out tub.png --crop 40,20 --no-model-view
"""

BENCH_EPILOG = """example:
  e2e-drive bench pipeline ../shared/data/udacity_sim_a --batches 40 --workers 2
  e2e-drive bench pipeline ../shared/data/udacity_sim_a --json > pipeline.json
"""


def _crop(text: str) -> tuple[int, int]:
    try:
        top, bottom = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TOP,BOTTOM rows (e.g. 60,25), got {text!r}") from None
    return top, bottom


def register(groups: dict) -> None:
    preview = groups["data"].add_parser(
        "preview",
        help="a PNG grid of augmented samples with steering and the model crop",
        description="Augment random rows of a driving log as training does and save them as a picture grid: "
        "steering written on each, the model crop drawn as yellow lines, and the 66x200 model input.",
        epilog=PREVIEW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    preview.add_argument("paths", nargs="+", metavar="PATH", help="driving log folders or CSV files")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    preview.add_argument("--seed", type=int, default=0, help="seed of the row choice and augmentation (default 0)")
    preview.add_argument("--crop", type=_crop, default=None, metavar="TOP,BOTTOM",
                         help="rows cut by the model (default: data_tools.preprocess.default_crop)")
    preview.add_argument("--no-model-view", action="store_true", help="leave out the preprocessed 66x200 view")
    preview.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    preview.set_defaults(handler=run_preview)

    bench = groups["bench"].add_parser(
        "pipeline",
        help="augmented images/s of DrivingDataset vs the naive imread-per-sample generator",
        description="Augmented images per second: the usual single-process imread-and-augment generator "
        "(baseline, measured in the same run) against DrivingDataset with its frame cache, with 1 worker and with "
        "worker threads and processes; plus PilotNet's in-memory training img/s.",
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("paths", nargs="+", metavar="PATH", help="driving log folders or CSV files")
    bench.add_argument("--batches", type=int, default=40,
                       help="batches per measurement, one epoch; a smaller log is tiled (default 40)")
    bench.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    bench.add_argument("--workers", type=int, default=2, help="worker threads/processes (default 2)")
    bench.add_argument("--repeats", type=int, default=3, help="interleaved repetitions, median reported (default 3)")
    bench.add_argument("--no-processes", action="store_true", help="skip the worker-process measurement")
    bench.add_argument("--no-model", action="store_true", help="skip the PilotNet training measurement")
    bench.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bench.set_defaults(handler=run_bench)


def run_preview(args: argparse.Namespace) -> int:
    from data_tools.pipeline_bench import load_log
    from data_tools.preview import preview

    if args.n < 1:
        raise CommandError(f"--n must be >= 1, got {args.n}")
    driving_log = load_log(args.paths)
    path = preview(driving_log, args.out, n=args.n, seed=args.seed, crop=args.crop,
                   show_model_view=not args.no_model_view)
    if args.json:
        emit_json({"out": path, "n": args.n, "seed": args.seed, "rows": len(driving_log)})
    else:
        log(f"wrote {path} ({args.n} samples of {len(driving_log)} rows)")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from data_tools.pipeline_bench import format_result, run_pipeline_bench

    result = run_pipeline_bench(
        args.paths, batches=args.batches, batch_size=args.batch_size, workers=args.workers, repeats=args.repeats,
        processes=not args.no_processes, model=not args.no_model, seed=args.seed, log_fn=log,
    )
    emit(args.json, result, format_result(result))
    return 0
