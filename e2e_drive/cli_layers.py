"""CLI: ``e2e-drive bench layers``."""

from __future__ import annotations

import argparse


def register(groups) -> None:
    parser = groups["bench"].add_parser(
        "layers",
        help="train-step time of each custom layer vs its Keras built-in",
        description="Forward+backward step time of Maxout, PReLU, ELU and ReferenceConv2D inside a small "
        "conv net, against the built-in (or equivalent composition) measured in the same run.",
        epilog="example:\n  e2e-drive bench layers --batch 64 --steps 10 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(handler=run_bench_layers)


def run_bench_layers(args: argparse.Namespace) -> int:
    from e2e_drive.bench_layers import bench_layers, format_layers_report
    from e2e_drive.cli import emit

    report = bench_layers(batch_size=args.batch, steps=args.steps)
    emit(args.json, report, format_layers_report(report))
    return 0
