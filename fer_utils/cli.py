"""Command-line interface: ``python -m fer_utils <command>`` (or ``fer-report <command>``).

Expected problems (bad data, a run folder that is taken, a failed notebook) print one
``error:`` line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from fer_utils import CLASSES, PROFILES, DataError, OptionError

EXPECTED_ERRORS = (DataError, OptionError, FileExistsError, FileNotFoundError)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    for noisy in ("papermill", "jax._src.xla_bridge"):  # the pipeline prints its own progress; JAX its
        logging.getLogger(noisy).setLevel(logging.WARNING)  # search for accelerators
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if args.tf_log else "2")
    tensorflow_backend = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
    keras_commands = (cmd_train, cmd_evaluate, cmd_predict, cmd_export)
    publishes = args.handler is cmd_long_runs and args.action == "status" and args.write  # bfloat16 exports
    if (args.handler in keras_commands or publishes) and tensorflow_backend and not args.tf_log:
        import_tensorflow_quietly()
    from fer_utils.pipeline import PipelineError  # noqa: PLC0415 (keeps --help fast)
    from fer_utils.runs import RunFinishedError  # noqa: PLC0415
    try:
        return args.handler(args) or 0
    except RunFinishedError as finished:
        print(finished)
        return 0
    except (*EXPECTED_ERRORS, PipelineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 sent to /dev/null: its C++ start-up lines
    (absl's warning, the oneDNN notice) ignore ``TF_CPP_MIN_LOG_LEVEL`` and would reach
    the terminal on every command. ``--tf-log`` shows them."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401, PLC0415
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 (no TTA) or more copies")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_utils",
                                     description="fer-report: facial emotion recognition on FER2013.")
    parser.add_argument("--tf-log", action="store_true", help="show TensorFlow's start-up and C++ log lines")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name, handler, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def data_options(sub, required=True, data_help="FER2013 folder, .zip or fer2013.csv"):
        sub.add_argument("--data", required=required, help=data_help)
        sub.add_argument("--skip-bad", action="store_true", help="skip (and list) unreadable or invalid images")
        sub.add_argument("--resize", action="store_true", help="scale images that are not 48x48")

    sub = command("summary", cmd_summary, "Images per usage and class, blank and duplicate counts.")
    data_options(sub)
    sub.add_argument("--json", action="store_true", help="print one JSON object")

    sub = command("pipeline", cmd_pipeline, "Run every notebook in order with papermill into a run folder.")
    data_options(sub, required=False, data_help="FER2013 folder, .zip or .csv (default: generate synthetic data)")
    sub.add_argument("--out", help="run folder (default: reports/<data name>-<profile>)")
    sub.add_argument("--profile", default="smoke", choices=PROFILES,
                     help="configs/<profile>.yaml: smoke (default; small synthetic data, minutes), demo (a larger "
                          "synthetic set, a quarter hour), full (the 30-minutes-per-model FER2013 study), fer2013 "
                          "(the committed study, from the finished long runs)")
    sub.add_argument("--force", action="store_true", help="replace this data's earlier run in --out")

    sub = command("report", cmd_report, "Rewrite a run folder's report.md and report.html from its files.")
    sub.add_argument("run_dir", help="run folder written by the pipeline")

    sub = command("synthetic", cmd_synthetic, "Write a synthetic FER-like dataset (folder or .zip).")
    sub.add_argument("out", help="folder or .zip path to create")
    sub.add_argument("--train", type=int, default=1200, help="Training images (default: %(default)s)")
    sub.add_argument("--public", type=int, default=300, help="PublicTest images (default: %(default)s)")
    sub.add_argument("--private", type=int, default=300, help="PrivateTest images (default: %(default)s)")
    sub.add_argument("--seed", type=int, default=0, help="random seed of the drawn faces (default: %(default)s)")

    sub = command("evaluate", cmd_evaluate, "Score a saved model on one usage of a data source.")
    sub.add_argument("--model", action="append",
                     help="saved .keras model (default: the shipped model); repeat it to score the ensemble "
                          "(mean probabilities) of several")
    data_options(sub)
    sub.add_argument("--usage", help="Training, PublicTest or PrivateTest (default: PublicTest, else the other "
                                     "test usage, else Training with a warning)")
    tta_options(sub, "also score test-time augmentation with N copies")
    sub.add_argument("--keep-blank", action="store_true", help="score blank images too (default: left out, reported)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")

    sub = command("predict", cmd_predict, "Find faces in photos and print their emotion probabilities.")
    sub.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG photos, or 48x48 face crops")
    sub.add_argument("--model", action="append",
                     help="saved .keras model (default: the shipped model); repeat it to average the "
                          "probabilities of several (an ensemble)")
    tta_options(sub, "average each model over N augmented copies of every face (test-time augmentation)")
    sub.add_argument("--annotate", metavar="DIR", help="write annotated copies of the photos into DIR")
    sub.add_argument("--json", action="store_true", help="print one JSON object")

    sub = command("train", cmd_train, "Train a model on a data source into a run folder.")
    data_options(sub)
    from fer_utils.train_cli import add_train_options  # noqa: PLC0415
    add_train_options(sub)

    sub = command("export", cmd_export, "Write a trained model for inference: no optimizer state, float32 "
                  "or bfloat16 (half the size); several models of one architecture: their weight average.")
    sub.add_argument("model", nargs="+", help="saved .keras model (a training run folder's best model); several: "
                                              "their uniform weight average (a model soup)")
    sub.add_argument("out", help=".keras file to write")
    sub.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                     help="bfloat16 halves the file (default: %(default)s)")
    sub.add_argument("--force", action="store_true", help="replace OUT if it exists")

    sub = command("long-runs", cmd_long_runs, "Train the runs of a plan one after another, each from "
                  "its pinned code, resuming where they stopped; show where they stand; or restore "
                  "the finished runs a new clone lacks.")
    sub.add_argument("action", choices=("start", "stop", "run", "status", "restore"),
                     help="start: in the background at low priority; stop: the runner started so (its run "
                          "resumes from its last checkpoint); run: in the foreground; status: a table; "
                          "restore: recreate the folders of finished and stopped runs this checkout lacks "
                          "from --published")
    sub.add_argument("--plan", default="configs/long-runs.yaml", help="plan file (default: %(default)s)")
    sub.add_argument("--runs", help="folder of the run folders (default: runs/ of the project)")
    sub.add_argument("--write", metavar="DIR", help="status: also copy histories, the table, finished models and "
                                                       "what stopped runs need to go on into DIR")
    sub.add_argument("--published", metavar="DIR",
                     help="restore: the folder that status --write filled; start warns about the runs there "
                          "that have no folder here (default: reports/long-runs/ of the project)")
    return parser


def cmd_summary(args) -> None:
    from fer_utils.data import load_dataset  # noqa: PLC0415
    from fer_utils.quality import blank_counts, duplicate_summary  # noqa: PLC0415
    dataset = load_dataset(args.data, skip_bad=args.skip_bad, resize=args.resize)
    counts = dataset.counts()
    summary = {
        "source": dataset.source, "sha256": dataset.source_hash, "synthetic": dataset.synthetic,
        "usages": {u: {c: int(counts.loc[u, c]) for c in CLASSES} for u in counts.index},
        "blank": blank_counts(dataset), "duplicates": duplicate_summary(dataset),
        "skipped": [{"item": name, "problem": problem} for name, problem in dataset.skipped],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{dataset.source} ({'SYNTHETIC data' if dataset.synthetic else 'sha256 ' + dataset.source_hash[:16]})")
    print(counts.to_string())
    print("blank images:", ", ".join(f"{u} {n}" for u, n in summary["blank"].items()))
    dup = summary["duplicates"]
    print(f"exact duplicates: {dup['images']} images in {dup['groups']} groups; within "
          + ", ".join(f"{u} {n}" for u, n in dup["within"].items())
          + "".join(f"; across {pair} {n}" for pair, n in dup["across"].items()))
    if dataset.skipped:
        print(f"skipped {len(dataset.skipped)} bad item(s):")
        for _, problem in dataset.skipped:
            print(f"  {problem}")


def cmd_pipeline(args) -> None:
    from fer_utils.pipeline import run_pipeline  # noqa: PLC0415
    run_dir = run_pipeline(args.data, args.out, profile=args.profile, force=args.force, skip_bad=args.skip_bad,
                           resize=args.resize)
    print(f"run folder: {run_dir}")


def cmd_report(args) -> None:
    from fer_utils.report import write_report  # noqa: PLC0415
    from fer_utils.runs import MANIFEST  # noqa: PLC0415
    if not (Path(args.run_dir) / MANIFEST).exists():
        raise FileNotFoundError(f"{args.run_dir}: not a run folder (no {MANIFEST})")
    for path in write_report(args.run_dir):
        print(f"wrote {path}")


def cmd_synthetic(args) -> None:
    from fer_utils.synthetic import generate  # noqa: PLC0415
    out = generate(args.out, n_train=args.train, n_public=args.public, n_private=args.private, seed=args.seed)
    print(f"wrote synthetic data to {out}")


def cmd_evaluate(args) -> None:
    from fer_utils.data import load_dataset  # noqa: PLC0415
    from fer_utils.predict import load_model  # noqa: PLC0415
    from fer_utils.scoring import default_usage, evaluate_model  # noqa: PLC0415
    check_tta_options(args)
    dataset = load_dataset(args.data, skip_bad=args.skip_bad, resize=args.resize)
    usage = args.usage or default_usage(dataset)
    if usage == "Training" and not args.usage:
        logging.warning("%s has no test usage: scoring Training, which models train on (an optimistic "
                        "accuracy); --usage Training says it is meant", args.data)
    paths = args.model or [None]
    models = [load_model(path) for path in paths]
    result = evaluate_model(models, dataset, usage, tta=args.tta, tta_mode=args.tta_mode,
                            keep_blank=args.keep_blank)
    result["model"] = str(paths[0] or "default") if len(paths) == 1 else [str(p) for p in paths]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    kind = "SYNTHETIC data" if dataset.synthetic else "FER2013"
    low, high = result["accuracy_ci"]
    print(f"{result['data']} ({kind}), {usage}: {result['n']} images, {result['blank_removed']} blank left out, "
          f"computed in {result['compute_dtype']}")
    print(f"accuracy {result['accuracy']:.4f} (95% CI {low:.4f}-{high:.4f}), macro-F1 {result['macro_f1']:.4f}")
    if result["tta"]:
        tta = result["tta"]
        print(f"with {tta['mode']} TTA x{tta['n']}: accuracy {tta['accuracy']:.4f}, macro-F1 {tta['macro_f1']:.4f}")
    for path, member in zip(paths, result.get("members", [])):
        print(f"  member {path}: accuracy {member['accuracy']:.4f}"
              + (f", with TTA {member['tta_accuracy']:.4f}" if "tta_accuracy" in member else ""))
    for label, scores in (("", result), (" with TTA", result["tta"] or {})):
        if "gain_over_best_member" in scores:
            gain = scores["gain_over_best_member"]
            print(f"ensemble of {len(paths)}{label}: {gain['gain'] * 100:+.2f} points over its best member "
                  f"(paired 95% CI {gain['gain_ci'][0] * 100:+.2f} to {gain['gain_ci'][1] * 100:+.2f})")


def tta_options(sub, help_text: str) -> None:
    """``--tta N`` and ``--tta-mode`` (random or the fixed views), checked by :func:`check_tta_options`."""
    sub.add_argument("--tta", type=non_negative_int, default=0, metavar="N", help=help_text)
    sub.add_argument("--tta-mode", default="random", choices=("random", "deterministic"),
                     help="random: N randomly augmented copies, as the seed report; deterministic: N of 10 fixed "
                          "views (the image, its mirror, both shifted by 2 pixels) (default: %(default)s)")


def check_tta_options(args) -> None:
    """``--tta`` and ``--tta-mode`` checked before any data or model loads."""
    from fer_utils.tta import DETERMINISTIC_VIEWS  # noqa: PLC0415
    if args.tta_mode == "deterministic" and args.tta > len(DETERMINISTIC_VIEWS):
        raise OptionError(f"--tta {args.tta}: deterministic TTA has {len(DETERMINISTIC_VIEWS)} views; "
                          f"give --tta {len(DETERMINISTIC_VIEWS)} or fewer, or --tta-mode random")


def cmd_predict(args) -> int:
    from fer_utils.predict import load_model, predict_images  # noqa: PLC0415
    check_tta_options(args)
    paths = args.model or [None]
    results, errors = predict_images([load_model(path) for path in paths], args.images, annotate_dir=args.annotate,
                                     tta=args.tta, tta_mode=args.tta_mode)
    if args.json:
        print(json.dumps({"models": [str(path or "default") for path in paths],
                          "tta": {"n": args.tta, "mode": args.tta_mode} if args.tta else None,
                          "images": results, "errors": errors}, indent=2))
    else:
        for item in results:
            if not item["faces"]:
                print(f"{item['image']}: no face found")
            for face in item["faces"]:
                top = sorted(face["probabilities"].items(), key=lambda kv: -kv[1])[:3]
                print(f"{item['image']}: face at {face['box']}: " + ", ".join(f"{c} {p:.2f}" for c, p in top))
    for error in errors:
        print(f"error: {error['error']}", file=sys.stderr)
    return 2 if errors else 0


def cmd_train(args) -> None:
    from fer_utils.train_cli import run_training  # noqa: PLC0415
    run_training(args)


def cmd_export(args) -> None:
    from fer_utils.models import average_weights, export_for_inference  # noqa: PLC0415
    from fer_utils.predict import load_model  # noqa: PLC0415
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out}: exists; pass --force to replace it")
    if out.suffix != ".keras":
        raise DataError(f"{out}: the exported model's file name must end in .keras")
    if out.resolve() in {Path(path).resolve() for path in args.model}:
        raise OptionError(f"{out}: is one of the models to export; write to another file")
    models = [load_model(path) for path in args.model]
    try:
        model = average_weights(models, args.model) if len(models) > 1 else models[0]
    except ValueError as mismatch:
        raise DataError(str(mismatch)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    export_for_inference(model, args.precision).save(out)
    averaged = f"; the weight average of {len(models)} models" if len(models) > 1 else ""
    print(f"wrote {out} ({args.precision}, {out.stat().st_size / 1e6:.1f} MB{averaged})")


def cmd_long_runs(args) -> int:
    from fer_utils import long_runs  # noqa: PLC0415
    if args.action == "start":
        print(f"long runs started in the background; log: {long_runs.start_detached(args.plan, args.runs)}")
        published = long_runs.load_plan(args.plan).published_dir(args.published)
        if missing := long_runs.unrestored_runs(args.plan, published, args.runs):
            print(f"warning: {len(missing)} runs published in {published} (finished, or stopped to go on) have "
                  f"no folder here and train from the start ({', '.join(missing)}); to keep them instead, stop the "
                  f"runner and `long-runs restore` first",
                  file=sys.stderr)
    elif args.action == "stop":
        pid = long_runs.stop_runner(args.plan, args.runs)
        print(f"stopped the runner (process {pid})" if pid else "no runner was running")
    elif args.action == "run":
        return 1 if long_runs.run_plan(args.plan, args.runs, log=lambda line: print(line, flush=True)) else 0
    elif args.action == "restore":
        published = long_runs.load_plan(args.plan).published_dir(args.published)
        restored = long_runs.restore_runs(args.plan, published, args.runs)
        print(f"restored {len(restored)} runs (finished, or stopped to go on) from {published}: "
              f"{', '.join(restored) or 'none'}")
    else:
        print(long_runs.status_table(args.plan, args.runs).to_string(index=False))
        if args.write:
            print(f"wrote {long_runs.write_status(args.plan, args.write, args.runs)}")
    return 0
