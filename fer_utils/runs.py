"""Run folders: one per run, never written over, each with a manifest that makes it reproducible."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

from fer_utils import DataError

#: Packages whose versions every manifest records.
TRACKED_PACKAGES = ("fer-report", "tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas",
                    "scikit-learn", "scipy", "matplotlib", "seaborn", "pillow", "papermill",
                    "nbval", "opencv-python-headless")
#: The files of a run folder, named here only. A training run: the best model, its history,
#: its options, why it stopped, its train/validation split. A pipeline run adds the others.
MANIFEST, HISTORY, MODEL = "manifest.json", "history.csv", "model.keras"
TRAIN_CONFIG, TRAIN_STATE, SPLIT = "train_config.json", "train_state.json", "split.npz"
METRICS, TRAINING, PREPARED = "metrics.json", "training.json", "data/prepared.npz"
FER_PACKAGE, DISCUSSION, CHECKS = "fer_package.json", "discussion.md", "checks.md"
#: A training run's last complete checkpoint (``backup/``, or ``backup.old/`` after a kill
#: between the two renames that replace it), for a resume.
BACKUP = "backup"
#: The distillation targets of a run with teachers, computed once (``(n, 7)`` or ``(views, n, 7)``),
#: and each teacher's probabilities (``<k>.npy``), kept while the targets are computed, so that an
#: interrupted run loses at most the teacher it was labelling with.
TEACHER_TARGETS, TEACHER_PARTS = "teacher_targets.npy", "teacher_targets.parts"
#: A pipeline run's folders of figures and executed notebooks, and its report.
FIGURES_DIR, NOTEBOOKS_DIR, REPORT_MD, REPORT_HTML = "figures", "notebooks", "report.md", "report.html"
#: The long-run plan's status table.
STATUS = "status.md"
#: A pipeline run's learning rate x batch sweep: its choice, and one training run per cell.
SWEEP, SWEEP_DIR = "sweep.json", "sweep"
#: Files a replaced run folder keeps: written by hand or by another command, not by the run.
KEPT_ON_REPLACE = (DISCUSSION, FER_PACKAGE, CHECKS)


def find_backup(out) -> Path | None:
    """The complete backup of a run folder (``backup/``, or ``backup.old/`` when a kill fell
    between the two renames of :class:`fer_utils.train.RunCheckpoint`), if any."""
    for name in (BACKUP, BACKUP + ".old"):
        if (Path(out) / name / "state.json").exists():
            return Path(out) / name
    return None


def model_dir(run_dir, name: str | None = None) -> Path:
    """A training run folder: ``run_dir`` itself, or model ``name``'s folder in a pipeline run."""
    return Path(run_dir) / "models" / name if name else Path(run_dir)


def model_path(run_dir, name: str | None = None) -> Path:
    """The best model of a training run folder, or of model ``name`` of a pipeline run."""
    return model_dir(run_dir, name) / MODEL


def adopt_run(run_dir, name: str, source) -> Path:
    """Copy a finished training run (model, history, options, state) from ``source`` (relative
    to ``run_dir`` unless absolute) into model ``name``'s folder of the pipeline run
    ``run_dir``, whose later notebooks then read it as if the run had trained it."""
    source = Path(os.path.normpath(Path(run_dir) / source))
    missing = [f for f in (MODEL, HISTORY, TRAIN_CONFIG, TRAIN_STATE) if not (source / f).exists()]
    state = read_json(source / TRAIN_STATE, {}).get("state")
    if missing or state not in ("completed", "early_stopped", "time_budget"):
        found = f"no {', '.join(missing)}" if missing else f"its state is {state!r}"
        raise FileNotFoundError(f"{source}: {found}; not a finished training run "
                                f"(make long-runs trains the plan's runs, make long-runs-status publishes them)")
    target = model_dir(run_dir, name)
    target.mkdir(parents=True, exist_ok=True)
    for file in (MODEL, HISTORY, TRAIN_CONFIG, TRAIN_STATE):
        if (source / file).exists():
            shutil.copy2(source / file, target / file)
    return target


def read_train_config(folder) -> dict:
    """The options a training run folder was trained with (``{}`` when not recorded)."""
    return read_json(Path(folder) / TRAIN_CONFIG, {})


def read_train_state(folder) -> dict:
    """How a training run folder stands: its ``state``, ``stop_reason``, epochs (``{}`` when not recorded)."""
    return read_json(Path(folder) / TRAIN_STATE, {})


def trained_models(run_dir) -> list[str]:
    """The models a pipeline run trained (``training.json``), best validation accuracy first."""
    training = read_json(Path(run_dir) / TRAINING)
    if not training:
        raise FileNotFoundError(f"{Path(run_dir) / TRAINING}: not found or empty; run the training "
                                f"notebook (04) for this run folder first")
    return by_validation(training, other_split_models(run_dir, [t["model"] for t in training]))


def by_validation(training: list[dict], other_split=frozenset()) -> list[str]:
    """The models of ``training.json`` rows, best validation accuracy first; then those
    validated on another split (``other_split``) and last those trained without validation
    split (``None``): neither can be ranked against the others."""
    return [t["model"] for t in sorted(training, key=lambda t: (t["best val_accuracy"] is None,
                                                                t["model"] in other_split,
                                                                -(t["best val_accuracy"] or 0)))]


def other_split_models(run_dir, names) -> set[str]:
    """The models of a pipeline run trained with another seed than the run's (its manifest's
    ``seed``), so validated on another split; none when the run's seed is not recorded. (Only
    the seed is compared: the study's runs share its validation share and duplicate rule.)"""
    seed = read_json(Path(run_dir) / MANIFEST, {}).get("parameters", {}).get("seed")
    return {name for name in names
            if seed is not None and read_train_config(model_dir(run_dir, name)).get("seed", seed) != seed}


def beside_model(run_dir, name: str, architecture: str = "seed_cnn") -> str | None:
    """The model of a pipeline run to put beside model ``name``: the best (by validation) other
    run of ``architecture``, else the best other model; None when ``name`` is alone."""
    others = [other for other in trained_models(run_dir) if other != name]
    same = [other for other in others if read_train_config(model_dir(run_dir, other)).get("model") == architecture]
    return (same or others or [None])[0]


def model_label(path) -> str:
    """A saved model's short name: its run folder's for a run's ``model.keras``, else the file's."""
    path = Path(path)
    return path.parent.name if path.name == MODEL and path.parent.name else path.name


def save_atomically(path, write) -> Path:
    """``write(tmp)`` then rename over ``path``: a kill (or, flushed to disk first, a power
    loss) never leaves a torn file behind."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    write(tmp)
    with open(tmp, "rb") as written:
        os.fsync(written.fileno())
    os.replace(tmp, path)
    return path


def write_json(path, value) -> Path:
    """Write ``value`` as indented JSON, atomically."""
    return save_atomically(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2) + "\n"))


def read_json(path, default=None):
    """A JSON file's content, or ``default`` when it does not exist; a named
    :class:`fer_utils.DataError` when it is not valid JSON."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise DataError(f"{path}: not valid JSON ({error}); restore it from its run or from git") from None


def update_metrics(run_dir, key: str, value) -> None:
    """Set ``key`` of the run's ``metrics.json`` to ``value`` (other keys kept); returns nothing,
    so that a notebook cell ending with it shows no output."""
    path = Path(run_dir) / METRICS
    metrics = read_json(path, {})
    metrics[key] = value
    write_json(path, metrics)


class RunExistsError(FileExistsError):
    """The run folder already holds a run that this one must not replace."""


class RunFinishedError(Exception):
    """A resume was asked of a run that has nothing left to do."""


class RunLockedError(FileExistsError):
    """Another live process is writing the run folder."""


LOCK = "run.lock"
#: Tries, 50 ms apart, to take a run folder's lock before a writer is refused.
LOCK_TRIES = 20


def lock_holder(run_dir) -> dict | None:
    """The live holder of ``run_dir``'s lock (host, pid, started), or None when no process
    holds it (the kernel releases the lock of a process that is gone)."""
    path = Path(run_dir) / LOCK
    try:
        handle = path.open("r")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(handle.read() or "{}")
            except ValueError:
                return {}
        return None


def _in_use(run_dir: Path, holder: dict) -> RunLockedError:
    """The refusal naming the process that holds ``run_dir``."""
    return RunLockedError(f"{run_dir}: in use by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                          f"since {holder.get('started', '?')}")


class RunLock:
    """``with RunLock(run_dir):`` the process writes ``run_dir`` alone.

    An exclusive ``flock`` on ``run.lock``, which records host, process id and start time;
    the kernel releases it when the process ends, however it ends, so a lock is never left
    behind. A second writer gets :class:`RunLockedError` naming the holder.
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        for _ in range(LOCK_TRIES):  # another process may be checking the lock a moment
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.05)
        else:
            handle.close()
            raise _in_use(self.path.parent, lock_holder(self.path.parent) or {})
        try:
            handle.truncate(0)
            handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                     "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
            handle.flush()
        except BaseException:
            handle.close()
            raise
        self.handle = handle
        return self

    def __exit__(self, *exc):
        self.handle.close()  # releases the lock; the file stays, so no other process can lose its lock


def claim_run_dir(run_dir, data_hash: str, *, force: bool = False, resume: bool = False,
                  resumable: bool = False) -> Path:
    """Create ``run_dir`` for a run on data ``data_hash``, refusing to overwrite another run.

    A folder that is not a run folder (no manifest), one holding a run of *other* data, or
    one a live process is writing is never touched. One holding a run of the same data is
    replaced only with ``force`` (or continued with ``resume``, which the refusal suggests
    when the command is ``resumable``): the old folder waits as ``.replaced-<name>`` until the
    new one holds its :data:`KEPT_ON_REPLACE` files.
    """
    run_dir = Path(run_dir)
    manifest = run_dir / MANIFEST
    if run_dir.exists() and any(p.name != LOCK for p in run_dir.iterdir()):
        holder = lock_holder(run_dir)
        if holder is not None:
            raise _in_use(run_dir, holder)
        if not manifest.exists():
            raise RunExistsError(f"{run_dir}: is not empty and is not a run folder (no {MANIFEST}); "
                                 f"it is never replaced, choose another --out")
        recorded = read_json(manifest).get("data", {}).get("sha256")
        if recorded != data_hash:
            raise RunExistsError(f"{run_dir}: holds a run of other data (sha256 {str(recorded)[:12]}...); "
                                 f"choose another --out")
        if resume:
            return run_dir
        if not force:
            raise RunExistsError(f"{run_dir}: already holds a run; pass --force to replace it"
                                 + (" or --resume to continue it" if resumable else ""))
        aside = run_dir.with_name(f".replaced-{run_dir.name}")  # a kill midway leaves the old run here
        if aside.exists():
            raise RunExistsError(f"{aside}: left by a replacement of {run_dir} that was stopped midway; "
                                 f"keep what you need from it, delete it and run again")
        run_dir.rename(aside)
        run_dir.mkdir(parents=True)
        for name in KEPT_ON_REPLACE:
            if (aside / name).exists():
                shutil.copy2(aside / name, run_dir / name)
        shutil.rmtree(aside)
    elif resume:
        raise FileNotFoundError(f"{run_dir}: no run to resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`TRACKED_PACKAGES` (absent ones left out)."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


#: Written into a pinned snapshot of the code (long runs): the commit it was taken from.
PINNED_COMMIT = "PINNED_COMMIT"


def git_commit(ignore=None, root=None) -> str | None:
    """The git commit of ``root`` (default: the project), suffixed ``-dirty`` when the work tree
    has changes outside ``ignore`` (the run folder being written, when it is tracked) (or, in a
    pinned snapshot of the code, the commit it was taken from)."""
    root = Path(root or Path(__file__).parent.parent).resolve()
    if (root / PINNED_COMMIT).exists():
        return (root / PINNED_COMMIT).read_text().strip()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        inside = ignore is not None and Path(ignore).resolve().is_relative_to(root)
        exclude = [f":(exclude){Path(ignore).resolve().relative_to(root)}"] if inside else []
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *exclude],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def write_manifest(run_dir, *, kind: str, parameters: dict, data_source: str, data_hash: str,
                   synthetic: bool, extra: dict | None = None) -> Path:
    """Write ``manifest.json``: parameters, data source and hash, versions, git commit.

    Rewriting a run's manifest (progress, a resumed run) keeps its ``created`` time and
    ``git_commit``, the code it started from; a different current commit goes to
    ``git_commit_last``.
    """
    path = Path(run_dir) / MANIFEST
    earlier = json.loads(path.read_text()) if path.exists() else {}
    commit = git_commit(ignore=run_dir)
    manifest = {
        "kind": kind,
        "created": earlier.get("created") or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parameters": parameters,
        "data": {"source": str(data_source), "sha256": data_hash, "synthetic": synthetic},
        "git_commit": earlier.get("git_commit", commit),
        **({"git_commit_last": commit} if earlier and earlier.get("git_commit") != commit else {}),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        **(extra or {}),
    }
    return write_json(path, manifest)


def read_manifest(run_dir) -> dict:
    """The manifest of a run folder."""
    return json.loads((Path(run_dir) / MANIFEST).read_text())


def read_history(run_dir):
    """A training run's per-epoch history (a DataFrame with an ``epoch`` column); empty
    before its first epoch ends (Keras creates the file empty) or when there is none. The
    empty ``val_`` columns Keras logs for a run without validation split are left out."""
    import pandas as pd  # noqa: PLC0415

    path = Path(run_dir) / HISTORY
    if not path.exists() or not path.stat().st_size:
        return pd.DataFrame({"epoch": []})
    history = pd.read_csv(path)
    empty = [c for c in history if c.startswith("val_") and history[c].isna().all()]
    return history.drop(columns=empty)
