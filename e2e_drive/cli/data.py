"""``e2e-drive data check`` and ``e2e-drive data preview``: look at driving logs before training on them."""

from __future__ import annotations

import argparse
import logging

from e2e_drive.cli import add_command
from e2e_drive.cli.output import emit
from e2e_drive.cli.types import count, crop, seed

log = logging.getLogger(__name__)

PREVIEW_LIMIT = 256  # cells of one grid: a 16x16 picture is already too small to read


def register(commands, common: argparse.ArgumentParser) -> None:
    check = add_command(
        commands, "check", group_name="data", common=common, handler=run_check,
        help="report rows, cameras, image sizes, steering histogram and problems of driving logs",
        description="Read driving logs (Udacity folders/CSVs, donkeycar tubs), decode every image and report "
        "what is there and what is wrong. Exit code 1 when problems are found.",
        epilog="examples:\n  e2e-drive data check ../shared/data/udacity_sim_a --plot steering.png\n"
        "  e2e-drive data check ../shared/data/donkey_tub_a --json",
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="log folder, driving_log.csv or tub folder")
    check.add_argument("--skip-bad", action="store_true", help="count bad rows as skipped instead of problems")
    check.add_argument("--no-decode", action="store_true", help="do not decode images (faster, finds fewer problems)")
    check.add_argument("--plot", metavar="PNG", help="write the steering histogram as a PNG")

    preview = add_command(
        commands, "preview", group_name="data", common=common, handler=run_preview,
        help="a PNG grid of augmented samples with steering and the model crop",
        description="Augment random rows of a driving log as training does and save them as a picture grid: "
        "steering written on each, the model crop drawn as yellow lines, and the 66x200 model input.",
        epilog="examples:\n"
        "  e2e-drive data preview ../shared/data/udacity_sim_a --out grid.png --n 16 --seed 0\n"
        "  e2e-drive data preview ../shared/data/donkey_tub_a --out tub.png --crop 40,20 --no-model-view",
    )
    preview.add_argument("paths", nargs="+", metavar="PATH", help="driving log folders, CSV files or tubs")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--n", type=count(PREVIEW_LIMIT, "the grid's limit"), default=16,
                         help=f"number of samples, 1..{PREVIEW_LIMIT} (default 16)")
    preview.add_argument("--seed", type=seed, default=0, help="seed of the row choice and augmentation (default 0)")
    preview.add_argument("--crop", type=crop, default=None, metavar="TOP,BOTTOM",
                         help="rows cut by the model (default: 37.5%% top, 15.6%% bottom, e.g. 60,25 of 160 rows)")
    preview.add_argument("--no-model-view", action="store_true", help="leave out the preprocessed 66x200 view")


def run_check(args: argparse.Namespace) -> int:
    from data_tools.check import check, plot_histogram

    report = check(args.paths, on_error="skip" if args.skip_bad else "raise", decode=not args.no_decode)
    if args.plot and report.rows:
        plot_histogram(report, args.plot)
        log.info("histogram written to %s", args.plot)
    emit(args, report.to_dict(), report.format())
    return 0 if report.ok else 1


def run_preview(args: argparse.Namespace) -> int:
    from data_tools import load_log
    from data_tools.preprocess import parse_crop
    from data_tools.preview import preview

    driving_log = load_log(args.paths)
    path = preview(driving_log, args.out, n=args.n, seed=args.seed, crop=parse_crop(args.crop),
                   show_model_view=not args.no_model_view)
    emit(args, {"out": path, "n": args.n, "seed": args.seed, "rows": len(driving_log)},
         f"wrote {path} ({args.n} samples of {len(driving_log)} rows)")
    return 0
