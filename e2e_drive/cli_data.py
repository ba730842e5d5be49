"""CLI: ``e2e-drive data check``."""

from __future__ import annotations

import argparse


def register(groups) -> None:
    parser = groups["data"].add_parser(
        "check",
        help="report rows, cameras, image sizes, steering histogram and problems of driving logs",
        description="Read driving logs (Udacity folders/CSVs, donkeycar tubs), decode every image and report "
        "what is there and what is wrong. Exit code 1 when problems are found.",
        epilog="examples:\n  e2e-drive data check ../shared/data/udacity_sim_a --plot steering.png\n"
        "  e2e-drive data check ../shared/data/donkey_tub_a --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="log folder, driving_log.csv or tub folder")
    parser.add_argument("--skip-bad", action="store_true", help="count bad rows as skipped instead of problems")
    parser.add_argument("--no-decode", action="store_true", help="do not decode images (faster, finds fewer problems)")
    parser.add_argument("--plot", metavar="PNG", help="write the steering histogram as a PNG")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from data_tools.check import check, plot_histogram
    from e2e_drive.cli import emit, log

    report = check(args.paths, on_error="skip" if args.skip_bad else "raise", decode=not args.no_decode)
    if args.plot and report.rows:
        plot_histogram(report, args.plot)
        log(f"histogram written to {args.plot}")
    emit(args.json, report.to_dict(), report.format())
    return 0 if report.ok else 1
