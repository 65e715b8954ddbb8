"""The ``train`` command: options built from :class:`fer_utils.config.TrainConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from fer_utils import DataError, OptionError
from fer_utils.config import SEED_AUGMENTATION, TrainConfig, contradictions, describe_contradictions

FIELDS = dataclasses.fields(TrainConfig)
#: Help beyond the default, where the option's name does not say it all.
HELP = {"strategy": "tf.distribute strategy: default, mirrored or multiworker (TensorFlow backend only); ",
        "weight_decay": "decoupled, any optimizer; -1: 1e-4 for adamw, 0 for the others; ",
        "precision": "auto (bf16 on an accelerator or a bf16 CPU), mixed_bfloat16 or float32; ",
        "momentum": "sgd only; ", "warmup_epochs": "cosine only; "}
#: Data options a resumed run must also keep.
DATA_OPTIONS = {"val_fraction": 0.2, "drop_test_duplicates": False}


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per TrainConfig field (dicts as JSON), plus the run-folder options.

    No option has a parser default, so that ``--resume`` can tell the options given from
    those left out (which it takes from the run's saved config).
    """
    defaults = TrainConfig()
    for f in FIELDS:
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"default: {default}")
        elif isinstance(default, dict):
            help_text = (f"JSON overriding the seed augmentation {json.dumps(SEED_AUGMENTATION)}"
                         if f.name == "augmentation"
                         else 'JSON keywords of the model builder, e.g. {"widths": [64, 128]}')
            parser.add_argument(flag, type=json.loads, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=argparse.SUPPRESS,
                                help=HELP.get(f.name, "") + f"default: {default}")
    parser.add_argument("--val-fraction", type=float, default=argparse.SUPPRESS, help="default: 0.2")
    parser.add_argument("--drop-test-duplicates", action="store_true", default=argparse.SUPPRESS)
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted or time-budget-stopped run in --out with its saved "
                             "options (only --epochs, --time-budget and --verbose may change)")
    parser.add_argument("--force", action="store_true", help="replace this data's earlier run in --out")


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
    """Check the options, load and prepare the data, claim and lock the run folder, train,
    plot the learning curves into ``figures/``, print the best validation score."""
    from fer_utils.data import load_dataset  # noqa: PLC0415
    from fer_utils.models import check_model_options  # noqa: PLC0415
    from fer_utils.plots import learning_curves, save_fig  # noqa: PLC0415
    from fer_utils.prepare import prepare  # noqa: PLC0415
    from fer_utils.runs import RunLock, claim_run_dir, model_path, read_history, read_manifest, write_manifest  # noqa: PLC0415
    from fer_utils.train import check_resume, summarize_history, train  # noqa: PLC0415

    saved = None
    if args.resume:
        try:
            manifest = read_manifest(args.out)
        except FileNotFoundError:
            raise FileNotFoundError(f"{args.out}: no run to resume (no manifest.json)") from None
        except ValueError as error:
            raise DataError(f"{args.out}: unreadable manifest.json ({error})") from None
        if manifest.get("kind") != "train" or "parameters" not in manifest:
            raise DataError(f"{args.out}: holds a {manifest.get('kind')!r} run, not a train run; nothing to resume")
        saved = manifest["parameters"]
    try:
        config, data = resolve_options(args, saved)
        check_model_options(config.model, config.model_options)
    except (TypeError, ValueError) as error:
        raise OptionError(f"train: {error}") from None
    if args.resume:
        check_resume(args.out, config)
    dataset = load_dataset(args.data, skip_bad=args.skip_bad, resize=args.resize)
    run_dir = claim_run_dir(args.out, dataset.source_hash, force=args.force, resume=args.resume,
                            resumable=True)
    with RunLock(run_dir):
        prepared = prepare(dataset, val_fraction=data["val_fraction"], seed=config.seed,
                           drop_test_duplicates=data["drop_test_duplicates"])
        write_manifest(run_dir, kind="train", parameters={**dataclasses.asdict(config), **data},
                       data_source=dataset.source, data_hash=dataset.source_hash, synthetic=dataset.synthetic)
        if dataset.synthetic:
            print("NOTE: training on SYNTHETIC data, not FER2013")
        start = time.perf_counter()
        train(prepared, config, run_dir, resume=args.resume)
        history = read_history(run_dir)
        save_fig(learning_curves(history, f"Learning curves: {config.model}"), "learning_curves", run_dir,
                 synthetic=dataset.synthetic)
    summary = summarize_history(history)
    print(f"best validation accuracy {summary['best val_accuracy']:.4f} at epoch {summary['best epoch']} "
          f"of {summary['epochs']}; {time.perf_counter() - start:.0f} s this session; model: {model_path(run_dir)}")
