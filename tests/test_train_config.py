"""TrainConfig: the config.json schema round-trips, and every invalid option names its flag."""

from __future__ import annotations

import json
import math

import pytest

from e2e_drive.train_config import CONFIG_VERSION, TrainConfig, TrainConfigError
from tests.builders import config_of_version


def test_round_trip_through_json():
    config = TrainConfig(data=("a", "b/c"), epochs=3, batch_size=8, learning_rate=5e-4, activation="prelu",
                         conv="reference", dropout=0.25, augment=False, balance=True, seed=7, val_fraction=0.1,
                         crop="60,25", smooth_steering=2.5, early_stopping=0, strategy="multiworker",
                         mixed_precision=True, workers=4, worker_processes=True, cache="disk", cache_dir="/tmp/c",
                         verbose=2, frame_shape=[160, 320, 3], num_train=10, num_val=2)
    text = config.to_json()
    payload = json.loads(text)
    assert payload["crop"] == [60, 25] and payload["data"] == ["a", "b/c"] and payload["version"] == CONFIG_VERSION
    back = TrainConfig.from_json(text)
    assert back == config and back.crop == (60, 25) and back.frame_shape == (160, 320, 3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    assert TrainConfig(cache=None).cache == "none"


@pytest.mark.parametrize("options,message", [
    (dict(learning_rate=math.nan), "--lr: expected a finite number > 0, got nan"),
    (dict(learning_rate=0.0), "--lr: expected a finite number > 0, got 0"),
    (dict(learning_rate=math.inf), "--lr: expected a finite number > 0, got inf"),
    (dict(epochs=0), "--epochs: expected an integer in 1..10000, got 0"),
    (dict(epochs=2.5), "--epochs: expected an integer in 1..10000, got 2.5"),
    (dict(batch_size=True), "--batch-size: expected an integer in 1..8192, got True"),
    (dict(workers=0), "--workers: expected an integer in 1..256, got 0"),
    (dict(seed=-1), "--seed: expected an integer in 0..4294967295, got -1"),
    (dict(early_stopping=-2), "--early-stopping: expected an integer in 0..10000, got -2"),
    (dict(epoch_samples=10**9), "--epoch-samples: expected an integer in 0..10000000, got 1000000000"),
    (dict(dropout=1.0), "--dropout: expected a finite number >= 0 and < 1, got 1"),
    (dict(val_fraction=-0.1), "--val-fraction: expected a finite number >= 0 and < 1, got -0.1"),
    (dict(smooth_steering=math.nan), "--smooth-steering: expected a finite number >= 0, got nan"),
    (dict(activation="swish"), "--activation: expected one of elu, relu, prelu, maxout, rrelu, apl, got 'swish'"),
    (dict(conv="fast"), "--conv: expected one of keras, reference, got 'fast'"),
    (dict(strategy="tpu"), "--strategy: expected one of auto, mirrored, multiworker, got 'tpu'"),
    (dict(cache="ssd"), "--cache: expected one of auto, memory, disk, none, got 'ssd'"),
    (dict(crop="60"), "--crop: expected TOP,BOTTOM (two integers, e.g. 60,25), got '60'"),
    (dict(crop=(-1, 4)), "--crop: expected TOP,BOTTOM rows >= 0, got -1,4"),
    (dict(balance="yes"), "--balance: expected true or false, got 'yes'"),
    (dict(verbose=3), "--verbose: expected 0, 1 or 2, got 3"),
    (dict(cache_dir=""), "--cache-dir: expected a folder path, got ''"),
])
def test_invalid_options_name_the_flag(options, message):
    with pytest.raises(TrainConfigError) as error:
        TrainConfig(**options)
    assert str(error.value) == message


def test_damaged_or_foreign_config_files_name_the_file():
    good = TrainConfig(data=("a",)).to_dict()
    with pytest.raises(TrainConfigError, match=r"^runs/x/config.json: not valid JSON \(half-written or damaged\?\)"):
        TrainConfig.from_json(json.dumps(good)[:40], where="runs/x/config.json")
    with pytest.raises(TrainConfigError, match="^runs/x/config.json: unknown field\\(s\\) colour"):
        TrainConfig.from_dict({**good, "colour": "red"}, where="runs/x/config.json")
    with pytest.raises(TrainConfigError, match="^runs/x/config.json: no version field"):
        TrainConfig.from_dict({k: v for k, v in good.items() if k != "version"}, where="runs/x/config.json")
    with pytest.raises(TrainConfigError, match="^runs/x/config.json: config.json version: this e2e-drive reads"):
        TrainConfig.from_dict({**good, "version": 99}, where="runs/x/config.json")
    with pytest.raises(TrainConfigError, match="^runs/x/config.json: --lr: expected a finite number > 0, got -1"):
        TrainConfig.from_dict({**good, "learning_rate": -1}, where="runs/x/config.json")


def test_resume_differences_list_what_may_not_change():
    saved = TrainConfig(data=("runs/../data/a",), activation="elu", crop=(60, 25), batch_size=64)
    assert saved.resume_differences({"data": ("data/a",), "crop": "60,25", "epochs": 30, "workers": 4,
                                     "cache": "disk", "verbose": 0, "batch_size": 64}) == []
    assert saved.resume_differences({"activation": "relu", "crop": [60, 20], "learning_rate": 0.01,
                                     "mixed_precision": True, "data": ("data/b",)}) == [
        "--activation: saved elu, given relu", "--crop: saved 60,25, given 60,20", "--lr: saved 0.001, given 0.01",
        "--mixed-precision: saved false, given true", "DATA: saved runs/../data/a, given data/b",
    ]


def test_a_declared_option_reaches_the_cli_config_json_and_resume_checks():
    """A new training flag is one declared field: the parser, config.json, older files and resume read it."""
    import argparse
    from dataclasses import dataclass

    from e2e_drive.cli.train import add_config_options
    from e2e_drive.options import RUNTIME, Integer, Number, option

    @dataclass(frozen=True)
    class WarmupConfig(TrainConfig):
        warmup_epochs: int = option(0, "epochs of linear learning-rate warm-up", check=Integer(minimum=0),
                                    since=CONFIG_VERSION, legacy=0)
        prefetch: float = option(2.0, "batches read ahead", section=RUNTIME, check=Number(above=0.0))

    parser = argparse.ArgumentParser(prog="train")
    add_config_options(parser, WarmupConfig)
    assert "--warmup-epochs" in parser.format_help() and "linear learning-rate warm-up (default 0)" in \
        " ".join(parser.format_help().split())
    args = vars(parser.parse_args(["--warmup-epochs", "3", "--lr", "5e-4"]))
    assert args == {"warmup_epochs": 3, "learning_rate": 5e-4}  # flags not given stay off the namespace
    with pytest.raises(SystemExit):
        parser.parse_args(["--warmup-epochs", "-1"])

    config = WarmupConfig(data=("a",), **args)
    payload = json.loads(config.to_json())
    assert payload["warmup_epochs"] == 3 and WarmupConfig.from_json(config.to_json()) == config
    with pytest.raises(TrainConfigError, match="^--warmup-epochs: expected an integer >= 0, got -2$"):
        WarmupConfig(warmup_epochs=-2)
    # A file of the version before the field trained without it: it reads back with the declared legacy value.
    older = config_of_version(config, CONFIG_VERSION - 1)
    assert "warmup_epochs" not in older and WarmupConfig.from_dict(older).warmup_epochs == 0
    # Recipe options are refused on resume, runtime ones may change.
    assert config.resume_differences({"warmup_epochs": 4, "prefetch": 8.0}) == [
        "--warmup-epochs: saved 3, given 4"]
    assert "prefetch" in WarmupConfig.resumable() and "warmup_epochs" not in WarmupConfig.resumable()


def test_every_cli_flag_of_train_is_a_config_option_and_back():
    """No declared option is left off the command line, and no train flag bypasses the config."""
    from e2e_drive.cli import build_parser
    from e2e_drive.options import declared, flag_of

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {s for action in train._actions for s in action.option_strings}
    declared_flags = {flag_of(n, d) for n, (_, d) in declared(TrainConfig).items() if d.cli}
    assert declared_flags <= flags
    own = {"-h", "--help", "--json", "--verbose", "--quiet", "--debug", "--out", "--resume", "--overwrite"}
    assert flags - declared_flags == own


def test_workers_auto_is_one_on_cpus_and_all_cores_but_one_beside_a_gpu(capsys):
    from e2e_drive.cli import main
    from e2e_drive.options import declared
    from e2e_drive.train import MAX_AUTO_WORKERS, batch_workers

    assert TrainConfig().workers is None  # auto is the default
    assert batch_workers(3, gpus=1, cores=16) == (3, "--workers")  # asked for: kept, whatever the machine
    assert batch_workers(None, gpus=0, cores=16)[0] == 1
    assert batch_workers(None, gpus=1, cores=16)[0] == MAX_AUTO_WORKERS == 8
    assert batch_workers(None, gpus=1, cores=4)[0] == 3
    assert batch_workers(None, gpus=2, cores=1)[0] == 1
    assert batch_workers(None, cores=2) == (1, "auto: no GPU, the step needs the cores")  # this CPU-only machine
    check = declared(TrainConfig)["workers"][1].check
    assert check.parse("auto") is None and check.parse("4") == 4
    with pytest.raises(ValueError, match="expected auto or an integer in 1..256, got '0'"):
        check.parse("0")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "no/such/log", "--out", "x", "--workers", "many"])
    assert exit_.value.code == 2
    assert "argument --workers: expected auto or an integer, got 'many'" in capsys.readouterr().err
