"""The ``train`` command: options built from :class:`fer_utils.config.TrainConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from fer_utils.config import SEED_AUGMENTATION, TrainConfig

# Every TrainConfig field becomes a flag, but augmentation, which takes JSON.
FIELDS = [f for f in dataclasses.fields(TrainConfig) if f.name != "augmentation"]


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per TrainConfig field, plus the run-folder options."""
    defaults = TrainConfig()
    for f in FIELDS:
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"default: {default}")
    parser.add_argument("--augmentation", type=json.loads, default={},
                        help=f"JSON overriding the seed augmentation {json.dumps(SEED_AUGMENTATION)}")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--drop-test-duplicates", action="store_true")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--force", action="store_true", help="replace this data's earlier run in --out")


def run_training(args) -> None:
    """Load and prepare the data, claim the run folder, train, plot the learning curves into
    ``figures/``, print the best validation score."""
    from fer_utils.data import load_dataset  # noqa: PLC0415
    from fer_utils.plots import learning_curves, save_fig  # noqa: PLC0415
    from fer_utils.prepare import prepare  # noqa: PLC0415
    from fer_utils.runs import claim_run_dir, write_manifest  # noqa: PLC0415
    from fer_utils.train import load_history, train  # noqa: PLC0415

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in FIELDS},
                          augmentation={**SEED_AUGMENTATION, **args.augmentation})
    dataset = load_dataset(args.data, skip_bad=args.skip_bad, resize=args.resize)
    run_dir = claim_run_dir(args.out, dataset.source_hash, force=args.force, resume=args.resume)
    prepared = prepare(dataset, val_fraction=args.val_fraction, seed=config.seed,
                       drop_test_duplicates=args.drop_test_duplicates)
    parameters = {**dataclasses.asdict(config), "val_fraction": args.val_fraction,
                  "drop_test_duplicates": args.drop_test_duplicates}
    write_manifest(run_dir, kind="train", parameters=parameters, data_source=dataset.source,
                   data_hash=dataset.source_hash, synthetic=dataset.synthetic)
    if dataset.synthetic:
        print("NOTE: training on SYNTHETIC data, not FER2013")
    start = time.perf_counter()
    train(prepared, config, run_dir, resume=args.resume)
    history = load_history(run_dir)
    save_fig(learning_curves(history, f"Learning curves: {config.model}"), "learning_curves", run_dir,
             synthetic=dataset.synthetic)
    best = history.loc[history["val_accuracy"].idxmax()]
    print(f"best validation accuracy {best['val_accuracy']:.4f} at epoch {int(best['epoch']) + 1} "
          f"of {len(history)}; {time.perf_counter() - start:.0f} s this session; model: {run_dir / 'model.keras'}")
