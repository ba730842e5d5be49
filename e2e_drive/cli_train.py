"""CLI: ``e2e-drive train``, ``e2e-drive evaluate``, ``e2e-drive saliency`` and ``e2e-drive bench train``."""

from __future__ import annotations

import argparse

from e2e_drive.models import ACTIVATIONS, CONVS

TRAIN_EPILOG = """examples:
  e2e-drive train ../shared/data/udacity_sim_a --out runs/udacity --epochs 10
  e2e-drive train tub_a tub_b --out runs/donkey --activation prelu --smooth-steering 2 --json
  e2e-drive train ../shared/data/udacity_sim_a --out runs/udacity --epochs 20 --resume

multi-worker (one command per machine; worker 0 is the chief and writes the run):
  TF_CONFIG='{"cluster":{"worker":["host0:2222","host1:2222"]},"task":{"type":"worker","index":0}}' \\
    e2e-drive train DATA --out runs/mw --strategy multiworker
"""


def register(groups) -> None:
    root = groups["root"]
    train = root.add_parser(
        "train", help="train PilotNet on driving logs",
        description="Train PilotNet on Udacity folders, donkeycar tubs or simulator recordings. Writes "
        "config.json, best.keras, last.keras, history.csv, loss.png and TensorBoard logs to --out.",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("data", nargs="+", metavar="DATA", help="Udacity folders/CSVs, tubs or recordings")
    train.add_argument("--out", required=True, help="run directory, e.g. runs/NAME")
    train.add_argument("--epochs", type=int, default=10, help="total epochs (default 10)")
    train.add_argument("--batch-size", type=int, default=64, help="samples per step (default 64)")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    train.add_argument("--activation", choices=ACTIVATIONS, default="elu", help="activation layers (default elu)")
    train.add_argument("--conv", choices=CONVS, default="keras", help="convolution layers (default keras)")
    train.add_argument("--dropout", type=float, default=0.0, help="dropout after flatten and dense layers")
    train.add_argument("--no-augment", action="store_true", help="train on the centre frames as they are")
    train.add_argument("--balance", action="store_true", help="flatten the steering histogram")
    train.add_argument("--seed", type=int, default=0, help="the one seed of the run (default 0)")
    train.add_argument("--val-fraction", type=float, default=0.2,
                       help="last fraction of each recording held out, time-ordered (default 0.2)")
    train.add_argument("--workers", type=int, default=1, help="batch loader workers (default 1)")
    train.add_argument("--worker-processes", action="store_true",
                       help="run the --workers as processes (batches through shared memory) instead of threads")
    train.add_argument("--crop", default=None, metavar="TOP,BOTTOM", help="rows cut from the frame (default: 60,25 "
                       "for 160-row frames)")
    train.add_argument("--smooth-steering", type=float, default=0.0, metavar="SIGMA",
                       help="Gaussian-smooth the labels over SIGMA frames (default 0: off)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from last.keras")
    train.add_argument("--early-stopping", type=int, default=5, metavar="PATIENCE",
                       help="stop after PATIENCE epochs without val loss improvement; 0 disables (default 5)")
    train.add_argument("--strategy", choices=("auto", "mirrored", "multiworker"), default="auto",
                       help="auto (mirrored when several GPUs), mirrored, or multiworker (TF_CONFIG)")
    train.add_argument("--mixed-precision", action="store_true",
                       help="mixed_float16 on GPU, mixed_bfloat16 on CPU; the output layer stays float32")
    train.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    train.set_defaults(handler=run_train)

    evaluate = root.add_parser(
        "evaluate", help="RMSE/MAE/correlation of a model on driving logs, next to a mean baseline",
        description="Evaluate a .keras model on driving logs: RMSE, MAE and Pearson correlation against raw and "
        "Gaussian-smoothed labels, error by steering bin, each next to a predict-the-mean baseline.",
        epilog="example:\n  e2e-drive evaluate runs/udacity/best.keras ../shared/data/udacity_sim_a --plot eval.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("model", metavar="MODEL", help=".keras model file")
    evaluate.add_argument("data", nargs="+", metavar="DATA", help="Udacity folders/CSVs, tubs or recordings")
    evaluate.add_argument("--smooth-sigma", type=float, default=4.0, help="sigma (frames) of smoothed labels")
    evaluate.add_argument("--batch-size", type=int, default=64, help="prediction batch size (default 64)")
    evaluate.add_argument("--plot", default=None, metavar="OUT.png", help="PNG of predicted vs true steering")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.set_defaults(handler=run_evaluate)

    saliency = root.add_parser(
        "saliency", help="VisualBackProp saliency of one frame",
        description="VisualBackProp (Bojarski et al. 2017): which pixels of the frame drive the steering.",
        epilog="example:\n  e2e-drive saliency runs/udacity/best.keras IMG/center_2016_12_01.jpg --out sal.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    saliency.add_argument("model", metavar="MODEL", help=".keras model file")
    saliency.add_argument("image", metavar="IMAGE", help="a camera frame (JPEG/PNG)")
    saliency.add_argument("--out", required=True, help="output PNG (frame | overlay | mask)")
    saliency.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    saliency.set_defaults(handler=run_saliency)

    bench = groups["bench"].add_parser(
        "train", help="training throughput: DrivingDataset vs in-memory tensors, and each PilotNet variant",
        description="Training images/s fed from DrivingDataset (memory cache + augmentation) vs from in-memory "
        "tensors, and the train-step time of every activation/conv variant relative to ELU + Keras conv, "
        "all measured in the same run on synthetic 160x320 frames.",
        epilog="example:\n  e2e-drive bench train --steps 10 --batch 32 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    bench.add_argument("--steps", type=int, default=10, help="timed steps per measurement (default 10)")
    bench.add_argument("--variants", default="all", help="comma-separated activation[:conv] list, or 'all'")
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bench.set_defaults(handler=run_bench_train)


def run_train(args: argparse.Namespace) -> int:
    import contextlib
    import sys

    from e2e_drive.cli import emit_json, log
    from e2e_drive.train import train

    # Keras prints its progress bars on stdout; stdout is reserved for the --json object.
    with contextlib.redirect_stdout(sys.stderr):
        result = _train(train, args)
    if args.json:
        emit_json(result.to_dict())
    else:
        log(f"run {result.run_dir}: {result.epochs_run} epochs, best val RMSE {result.val_rmse:.4f}, "
            f"{result.train_seconds:.1f} s; best model {result.best_model_path}")
    return 0


def _train(train, args: argparse.Namespace):
    return train(
        args.data, args.out, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        activation=args.activation, conv=args.conv, augment=not args.no_augment, balance=args.balance,
        seed=args.seed, val_fraction=args.val_fraction, workers=args.workers,
        worker_processes=args.worker_processes, crop=args.crop,
        smooth_steering=args.smooth_steering, resume=args.resume, early_stopping=args.early_stopping,
        strategy=args.strategy, mixed_precision=args.mixed_precision, verbose=2 if args.json else 1,
        dropout=args.dropout,
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from e2e_drive.cli import emit
    from e2e_drive.evaluate import evaluate, format_report

    report = evaluate(args.model, args.data, smooth_sigma=args.smooth_sigma, batch_size=args.batch_size,
                      plot=args.plot)
    emit(args.json, report, format_report(report))
    return 0


def run_saliency(args: argparse.Namespace) -> int:
    from e2e_drive.cli import emit_json, log
    from e2e_drive.saliency import saliency_image

    report = saliency_image(args.model, args.image, args.out)
    if args.json:
        emit_json(report)
    else:
        log(f"wrote {report['out']} (steering {report['steering']:+.3f})")
    return 0


def run_bench_train(args: argparse.Namespace) -> int:
    from e2e_drive.bench_train import bench_train, format_train_report
    from e2e_drive.cli import emit

    report = bench_train(batch_size=args.batch, steps=args.steps, variants=args.variants)
    emit(args.json, report, format_train_report(report))
    return 0
