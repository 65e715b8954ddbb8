"""The ``train`` command: options built from :class:`fer_utils.config.TrainConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from fer_utils import OptionError
from fer_utils.config import CHOICES, SEED_AUGMENTATION, TrainConfig, contradictions, describe_contradictions

FIELDS = dataclasses.fields(TrainConfig)
#: Help beyond the default, where the option's name does not say it all.
HELP = {"model": "seed_cnn, vgg_gap, vgg_fc, vgg_lean or res_gap (fer_utils.models); ",
        "strategy": "tf.distribute strategy (TensorFlow backend only); ",
        "weight_decay": "decoupled, any optimizer; -1: 1e-4 for adamw, 0 for the others; ",
        "precision": "auto: bf16 on an accelerator or a bf16 CPU; ",
        "init_from": "a .keras model of the same model and options whose weights training starts from; ",
        "distill": "share of the --teachers' mean probabilities in the training targets, 0-1; ",
        "distill_views": "with --teachers: train on this many stored augmented copies of each image, which the "
                         "teachers label (teacher and student see the same view); 0: teachers label the clean "
                         "image; ",
        "momentum": "sgd only; ", "nesterov": "sgd only; ", "warmup_epochs": "cosine only; ",
        "plateau_monitor": "plateau only; ", "plateau_factor": "plateau only: the rate is multiplied by it; ",
        "plateau_patience": "plateau only, in epochs; ", "plateau_min_lr": "plateau only; ",
        "class_weighted": "the seed's class-weighted cross-entropy; ",
        "early_stopping": "patience in epochs on --early-stopping-monitor; 0: off; ",
        "time_budget": "minutes of training not to exceed; 0: no limit; ",
        "verbose": "Keras progress: 1 a bar, 2 one line per epoch; "}
#: Data options a resumed run must also keep.
DATA_OPTIONS = {"val_fraction": 0.2, "drop_test_duplicates": False}


def json_option(kind: type):
    """An argparse type: JSON text that must decode to ``kind`` (a list or a dict)."""
    names = {list: "a JSON list", dict: "a JSON object", str: "a string", type(None): "null", bool: "true or false",
             int: "a number", float: "a number"}

    def parse(text: str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text}") from None
        if not isinstance(value, kind):
            got = names.get(type(value), type(value).__name__)
            raise argparse.ArgumentTypeError(f"expected {names[kind]}, got {got}")
        return value

    return parse


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per TrainConfig field (dicts as JSON), plus the run-folder options.

    No option has a parser default, so that ``--resume`` can tell the options given from
    those left out (which it takes from the run's saved config).
    """
    defaults = TrainConfig()
    for f in FIELDS:
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        help_text = HELP.get(f.name, "") + f"default: {default if default != '' else 'none'}"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        elif isinstance(default, list):
            parser.add_argument(flag, type=json_option(list), default=argparse.SUPPRESS,
                                help='JSON list of saved models, e.g. ["runs/a/model.keras"]; default: none')
        elif isinstance(default, dict):
            help_text = (f"JSON overriding the seed augmentation {json.dumps(SEED_AUGMENTATION)}"
                         if f.name == "augmentation"
                         else 'JSON keywords of the model builder, e.g. {"widths": [64, 128]}')
            parser.add_argument(flag, type=json_option(dict), default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=argparse.SUPPRESS, choices=CHOICES.get(f.name),
                                help=help_text)
    parser.add_argument("--val-fraction", type=split_fraction, default=argparse.SUPPRESS,
                        help="share of Training held out for validation, 0 (none) to below 1; default: 0.2")
    parser.add_argument("--drop-test-duplicates", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                        help="leave out training images that duplicate a test image; default: False")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted or time-budget-stopped run in --out with its saved "
                             "options (only --epochs, --time-budget and --verbose may change)")
    parser.add_argument("--force", action="store_true", help="replace this data's earlier run in --out")


def split_fraction(text: str) -> float:
    """An argparse type: a validation share in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1): give 0 (no validation) up to below 1")
    return value


def resolve_options(args, saved: dict | None = None) -> tuple[TrainConfig, dict]:
    """``(config, data options)`` from the options given on the command line over ``saved``
    (a resumed run's manifest parameters) or the defaults."""
    given = {f.name: getattr(args, f.name) for f in FIELDS if hasattr(args, f.name)}
    base = {**dataclasses.asdict(TrainConfig()), **DATA_OPTIONS, **(saved or {})}
    data = {k: getattr(args, k, base[k]) for k in DATA_OPTIONS}
    found = contradictions({**DATA_OPTIONS, **saved}, data) if saved else {}
    if found:
        raise FileExistsError(describe_contradictions(found))
    config = TrainConfig(**{f.name: given.get(f.name, base[f.name]) for f in FIELDS})
    return config, data


def run_training(args) -> None:
    """The ``train`` command: resolve the options (a resumed run's saved ones under those
    given), run :func:`fer_utils.train.train_run`, print where it ended."""
    from fer_utils.models import check_model_options  # noqa: PLC0415
    from fer_utils.train import saved_options, train_run  # noqa: PLC0415

    try:
        config, data = resolve_options(args, saved_options(args.out) if args.resume else None)
        check_model_options(config.model, config.model_options)
    except (TypeError, ValueError) as error:
        raise OptionError(f"train: {error}") from None
    start = time.perf_counter()
    summary = train_run(args.data, args.out, config, **data, resume=args.resume, force=args.force,
                        skip_bad=args.skip_bad, resize=args.resize, notify=print)
    best = summary["best val_accuracy"]
    kept = (f"best validation accuracy {best:.4f} at epoch {summary['best epoch']}" if best is not None
            else f"no validation split, the model of epoch {summary['best epoch']}")
    print(f"{kept} of {summary['epochs']}; {time.perf_counter() - start:.0f} s this session; model: {summary['model']}")
