"""Long training runs that outlive a session: a plan of runs trained one after another,
each from a pinned snapshot of the code it started with, resumed where it was killed.

``configs/long-runs.yaml`` lists the runs in priority order; ``python -m fer_utils
long-runs start`` trains each unfinished one in the background at low priority (``make
long-runs``; ``long-runs stop`` stops it), ``long-runs status`` tells where each stands and ``--write DIR`` copies the
histories and a status table into a folder that is committed, with the finished runs' models
and what a stopped unfinished run needs to go on; on a new clone, ``long-runs restore``
recreates those runs' folders from that folder.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from fer_utils import DataError, OptionError
from fer_utils.config import TrainConfig, contradictions, read_yaml, typed
from fer_utils.report import markdown_table
from fer_utils.runs import (
    BACKUP,
    FIGURES_DIR,
    HISTORY,
    MANIFEST,
    MODEL,
    PINNED_COMMIT,
    SPLIT,
    STATUS,
    TEACHER_PARTS,
    TEACHER_TARGETS,
    TRAIN_CONFIG,
    TRAIN_STATE,
    RunLock,
    find_backup,
    lock_holder,
    read_history,
    read_json,
    write_json,
)

PINS = ".pins.json"
#: What a run folder recreated from its published copy holds about where it came from.
RESTORED = "restored.json"

#: What a plan entry may set besides the TrainConfig fields, with the kind of value each takes.
ENTRY_KEYS = {"name": "str", "about": "str", "publish_model": "bool", "val_fraction": "float",
              "drop_test_duplicates": "bool"}
#: What a plan entry sets for the plan only, not for training: ``publish_model: false`` keeps a
#: finished run's model out of the published folder (sweep cells: only their histories are read).
PLAN_ONLY = ("name", "about", "publish_model")
#: What a snapshot of the code holds: all that ``python -m fer_utils train`` needs.
PINNED_PATHS = ("fer_utils", "pyproject.toml")
#: Files of each run copied by ``status --write``.
PUBLISHED = (HISTORY, TRAIN_CONFIG, TRAIN_STATE, MANIFEST, f"{FIGURES_DIR}/learning_curves.png")
#: What a stopped unfinished run needs to go on where it stopped, on another clone: ``status
#: --write`` copies these files of its folder into ``<run>/resume/`` (with its last complete
#: checkpoint, and its best model so far when it validates: no image), and ``restore`` makes that
#: copy the run's folder.
RESUMED = (TRAIN_CONFIG, TRAIN_STATE, MANIFEST, SPLIT, TEACHER_TARGETS, TEACHER_PARTS, HISTORY)
RESUME_DIR = "resume"
#: Where ``status --write`` publishes the runs by default (``make long-runs-status``).
PUBLISHED_DIR = "reports/long-runs"
#: The largest model file published as it is; a larger one is published as a bfloat16 export
#: (half the size; issue: committed models of at most 16 MB).
MAX_MODEL_BYTES = 16_000_000
#: States of a run with nothing left to do.
DONE = ("completed", "early stopped")


@dataclasses.dataclass
class Plan:
    """A parsed plan: the data source, the runs in order and the project root."""

    data: Path
    runs: list[dict]
    root: Path

    def runs_dir(self, override=None) -> Path:
        """Where the run folders go: ``override``, else ``runs/`` of the project."""
        return Path(override or self.root / "runs").resolve()

    def published_dir(self, override=None) -> Path:
        """Where ``status --write`` published the runs: ``override``, else ``reports/long-runs/``
        of the project."""
        return Path(override or self.root / PUBLISHED_DIR).resolve()


def load_plan(path) -> Plan:
    """Read and check a plan file: every run named once, every option known, by name."""
    path = Path(path).resolve()
    plan = read_yaml(path)
    root = project_root(path.parent)
    if not plan.get("runs"):
        raise OptionError(f"{path}: no runs planned (a 'runs' list is needed)")
    if not plan.get("data"):
        raise OptionError(f"{path}: no data entry; name the FER2013 .zip, folder or .csv the runs train on")
    known = set(ENTRY_KEYS) | {f.name for f in dataclasses.fields(TrainConfig)}
    names = set()
    for number, entry in enumerate(plan["runs"], start=1):
        if not isinstance(entry, dict):
            raise OptionError(f"{path}: run {number} is not a mapping of options (got {entry!r})")
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name or name in names:
            raise OptionError(f"{path}: run {number} needs a unique name without '/', got {name!r}")
        names.add(name)
        unknown = set(entry) - known
        if unknown:
            raise OptionError(f"{path}: run {name}: unknown option(s) {', '.join(sorted(unknown))}")
        try:
            options = train_options(entry)
            config = TrainConfig(**options)
            entry.update({k: typed(k, v, ENTRY_KEYS[k]) for k, v in entry.items() if k in ENTRY_KEYS})
        except (TypeError, ValueError) as error:
            raise OptionError(f"{path}: run {name}: {error}") from None
        # as the run will take them (YAML's text "1e-3" a number); the augmentation as written
        entry.update({k: getattr(config, k) for k in options if k != "augmentation"})
    data = Path(plan.get("data", ""))
    return Plan(data if data.is_absolute() else (root / data).resolve(), plan["runs"], root)


def project_root(start: Path) -> Path:
    """The git work tree holding ``start`` (``start`` itself outside one, where runs can be
    trained in place but not pinned)."""
    try:
        result = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True)
    except OSError:
        return start
    return Path(result.stdout.strip()) if result.returncode == 0 else start


def train_args(entry: dict) -> list[str]:
    """The ``train`` command-line options of a plan entry."""
    args = []
    for key, value in entry.items():
        if key in PLAN_ONLY:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return args


def pinned_code(root: Path, runs_dir: Path, name: str) -> Path:
    """The snapshot of the code run ``name`` executes from: taken from the commit checked
    out when the run first starts (``runs/.pins.json``) and kept for the whole run."""
    pins = read_json(runs_dir / PINS, {})
    if name not in pins:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
        if head.returncode:
            raise OptionError(f"{root}: not a git work tree with a commit; long runs pin the code of a commit")
        pins[name] = head.stdout.strip()
        write_json(runs_dir / PINS, pins)
    code = runs_dir / ".code" / pins[name]
    if not (code / PINNED_COMMIT).exists():
        shutil.rmtree(code, ignore_errors=True)
        archive = subprocess.run(["git", "archive", "--format=tar", pins[name], *PINNED_PATHS], cwd=root,
                                 capture_output=True)
        if archive.returncode:
            raise OptionError(f"{name}: cannot take the code of its pinned commit {pins[name][:12]} "
                              f"({archive.stderr.decode(errors='replace').strip()}); fetch that commit, or "
                              f"remove the run's line from {runs_dir / PINS} and its folder to start it anew")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(code, filter="data")
        (code / PINNED_COMMIT).write_text(pins[name] + "\n")
    return code


def train_options(entry: dict) -> dict:
    """The :class:`TrainConfig` options a plan entry sets."""
    return {k: v for k, v in entry.items() if k not in ENTRY_KEYS}


def plan_differences(entry: dict, run_dir: Path) -> list[str]:
    """Options set by a started run's plan entry that contradict those it started with (a
    resume would refuse them): change only ``epochs`` of a started run, or plan a new one.
    Options the entry leaves out, and augmentation options the run's code did not know, are
    not compared: a default changed since then does not change the run."""
    saved = read_json(run_dir / MANIFEST, {}).get("parameters") or read_json(run_dir / TRAIN_CONFIG, {})
    options = train_options(entry)
    planned = dataclasses.asdict(TrainConfig(**options))
    given = {k: planned[k] for k in options} | {k: entry[k] for k in ("val_fraction", "drop_test_duplicates")
                                                 if k in entry}
    if "augmentation" in given:
        given["augmentation"] = {k: v for k, v in given["augmentation"].items()
                                 if k in saved.get("augmentation", given["augmentation"])}
    return list(contradictions(saved, given))


def run_state(run_dir: Path) -> str:
    """``not started``, ``running``, ``interrupted``, ``time budget`` (resumable),
    ``completed`` or ``early stopped``."""
    state = read_json(run_dir / TRAIN_STATE, {}).get("state", "running")
    if state != "running":
        return state.replace("_", " ")
    if lock_holder(run_dir) is not None:
        return "running"
    return "interrupted" if run_dir.exists() else "not started"


def next_run(plan: Plan, runs_dir, tried) -> dict | None:
    """The first run of ``plan`` that is unfinished and not in ``tried``."""
    return next((entry for entry in plan.runs if entry["name"] not in tried
                 and run_state(Path(runs_dir) / entry["name"]) not in DONE), None)


def with_model_paths(entry: dict, plan: Plan, runs_dir) -> dict:
    """``entry`` with the models it learns from (``init_from``, ``teachers``) as paths: a run of
    the plan named there becomes that run's best model (an :class:`OptionError` until the run
    is finished), a relative path is taken from the project root."""
    names = {other["name"] for other in plan.runs}

    def path(model: str) -> str:
        if model not in names:
            return str(plan.root / model)
        state = run_state(Path(runs_dir) / model)
        if state not in DONE:
            raise OptionError(f"{entry['name']}: learns from run {model}, which is {state}; it waits until "
                              f"{model} is finished")
        return str(Path(runs_dir) / model / MODEL)

    resolved = dict(entry)
    if entry.get("init_from"):
        resolved["init_from"] = path(entry["init_from"])
    if entry.get("teachers"):
        resolved["teachers"] = [path(teacher) for teacher in entry["teachers"]]
    return resolved


def _resolved(entry: dict, plan: Plan, runs_dir) -> dict | None:
    """:func:`with_model_paths`, or None while a run ``entry`` learns from is unfinished."""
    try:
        return with_model_paths(entry, plan, runs_dir)
    except OptionError:
        return None


def reread_plan(plan_file, log=print, tries: int = 3, pause: float = 10.0) -> Plan | None:
    """The plan file read again (runs added or reordered while another one trained are picked
    up), tried again after ``pause`` seconds when it cannot be read (an edit half-saved);
    None when it still cannot, so that the runner stops rather than train a plan nobody
    wrote (a plan with options newer than the runner's own code, for one)."""
    for attempt in range(tries):
        try:
            return load_plan(plan_file)
        except (OSError, ValueError) as error:  # OptionError and DataError are ValueErrors
            problem = error
            if attempt + 1 < tries:
                time.sleep(pause)
    log(f"{plan_file}: cannot be read ({problem}); the runner stops here. Fix the plan and run "
        f"`make long-runs` again (it restarts on the current code, which knows the newest options)")
    return None


def run_plan(plan_file, runs_dir=None, log=print) -> int:
    """Train every unfinished run of the plan in order, each from its pinned code, reading the
    plan again before each run (:func:`reread_plan`; a plan that cannot be read stops it);
    returns how many failed (one more when it stopped so). A run that fails is logged and the
    next one goes on; a run that learns from an unfinished one waits for it
    (:func:`with_model_paths`)."""
    plan = load_plan(plan_file)
    runs_dir = plan.runs_dir(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    for entry in plan.runs:
        if (state := run_state(runs_dir / entry["name"])) in DONE:
            log(f"{entry['name']}: {state}, skipped")
    failures, tried, waiting = 0, set(), set()
    with RunLock(runs_dir):
        while True:
            plan = reread_plan(plan_file, log)
            if plan is None:
                return failures + 1
            entry = next_run(plan, runs_dir, tried | waiting)
            if entry is None:
                return failures
            run_dir = runs_dir / entry["name"]
            if (exports := restored_exports(entry, runs_dir)) and not (run_dir / MANIFEST).exists():
                log(f"{entry['name']}: learns from {', '.join(exports)}, restored as bfloat16 exports "
                    f"(restored.json), not from the float32 models they were trained as")
            try:
                entry = with_model_paths(entry, plan, runs_dir)
            except OptionError as unfinished:  # tried again once another run has been trained
                log(str(unfinished))
                waiting.add(entry["name"])
                continue
            tried.add(entry["name"])
            waiting.clear()
            differ = plan_differences(entry, run_dir)
            if differ:
                log(f"{entry['name']}: skipped, the plan now differs from the run's saved options in "
                    f"{', '.join(differ)}; restore them, or plan a new run")
                failures += 1
                continue
            try:
                code = pinned_code(plan.root, runs_dir, entry["name"])
            except OptionError as error:
                log(f"{error}; the run is skipped")
                failures += 1
                continue
            resume = ["--resume"] if (run_dir / MANIFEST).exists() else []
            command = [sys.executable, "-m", "fer_utils", "train", "--data", str(plan.data),
                       "--out", str(run_dir), *train_args(entry), *resume]
            log(f"{entry['name']}: {'resuming' if resume else 'starting'} on code {code.name[:12]}: "
                + " ".join(command[3:]))
            env = {**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "2"}
            returncode = subprocess.run(command, cwd=code, env=env).returncode
            log(f"{entry['name']}: exit {returncode}, {run_state(run_dir)}")
            failures += returncode != 0


def run_parallel(plan_file, runs_dir, *, jobs: int, env=None, log=print) -> dict[str, int]:
    """Train every run of the plan from the code in place, ``jobs`` at a time, each process
    with ``1/jobs`` of the accelerator's memory (the lent GPU machine, whose copy of the
    tree is fresh, so there is nothing to pin); returns each run's exit code."""
    from fer_utils.data import load_dataset  # noqa: PLC0415

    plan = load_plan(plan_file)
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    load_dataset(plan.data)  # decode once into the cache that every run then reads
    share = f"{0.9 / jobs:.3f}"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "XLA_PYTHON_CLIENT_MEM_FRACTION": share, **(env or {})}
    waiting, running, codes = list(plan.runs), {}, {}
    while waiting or running:
        ready = [(entry, resolved) for entry in waiting if (resolved := _resolved(entry, plan, runs_dir))]
        if waiting and not ready and not running:
            for entry in waiting:
                codes[entry["name"]] = 1
                log(f"{entry['name']}: not started, a run it learns from did not finish")
            break
        for planned, entry in ready[:jobs - len(running)]:
            waiting.remove(planned)
            command = [sys.executable, "-m", "fer_utils", "train", "--data", str(plan.data),
                       "--out", str(runs_dir / entry["name"]), *train_args(entry)]
            with (runs_dir / f"{entry['name']}.log").open("w") as out:
                running[entry["name"]] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                          env=environment)
            log(f"{entry['name']}: started")
        for name, process in list(running.items()):
            if process.poll() is not None:
                codes[name] = running.pop(name).returncode
                log(f"{name}: exit {codes[name]}, {run_state(runs_dir / name)}")
        time.sleep(1)
    return codes


def start_detached(plan_file, runs_dir=None) -> Path:
    """Start :func:`run_plan` in the background at low priority, logging to
    ``runs/long-runs.log``; returns the log's path."""
    plan = load_plan(plan_file)
    runs_dir = plan.runs_dir(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    holder = lock_holder(runs_dir)
    if holder is not None:
        raise OptionError(f"{runs_dir}: the plan is already running (process {holder.get('pid')})")
    if not plan.data.exists():
        raise DataError(f"{plan.data}: no such file; the plan's data entry names it ({Path(plan_file).resolve()})")
    log = runs_dir / "long-runs.log"
    command = ["nice", "-n", "19", sys.executable, "-m", "fer_utils", "long-runs", "run",
               "--plan", str(Path(plan_file).resolve()), "--runs", str(runs_dir)]
    with log.open("a") as out:
        runner = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True, cwd=plan.root)
        if problem := lower_session_priority(runner.pid):
            out.write(f"the runner's session keeps its CPU share beside other sessions ({problem})\n")
    return log


def stop_runner(plan_file, runs_dir=None, wait: float = 120.0) -> int | None:
    """Stop the plan's runner started by :func:`start_detached` and the training it runs
    (SIGTERM to its process group: the run keeps its last checkpoint and resumes from it);
    returns its process id once its lock is released, None when none was running. An
    :class:`OptionError` when it is still running after ``wait`` seconds."""
    import signal  # noqa: PLC0415

    runs_dir = load_plan(plan_file).runs_dir(runs_dir)
    holder = lock_holder(runs_dir)
    if holder is None:
        return None
    try:
        os.killpg(holder["pid"], signal.SIGTERM)
    except ProcessLookupError:  # it ended meanwhile
        return holder["pid"]
    deadline = time.monotonic() + wait
    while lock_holder(runs_dir) is not None:
        if time.monotonic() > deadline:
            raise OptionError(f"{runs_dir}: the runner (process {holder['pid']}) still runs {wait:.0f} s after "
                              f"SIGTERM; stop it with kill -KILL -- -{holder['pid']}")
        time.sleep(0.5)
    return holder["pid"]


def lower_session_priority(pid: int) -> str | None:
    """Give the session of process ``pid`` the lowest share of the CPU where the kernel groups
    processes by session ("autogroup" scheduling, on by default in many Linux systems): there
    ``nice`` counts only within a session, and a detached runner at nice 19 would still take
    half the cores from the user's shell. Nothing to do elsewhere; returns why it could not."""
    group = Path(f"/proc/{pid}/autogroup")
    try:
        if group.exists():
            group.write_text("19")
    except OSError as error:
        return f"{group}: {error.strerror}"
    return None


def status_table(plan_file, runs_dir=None):
    """One row per planned run: state, epochs done / planned, best validation accuracy,
    minutes spent, estimated minutes left (at most, for runs that may stop early), commit."""
    import pandas as pd  # noqa: PLC0415

    plan = load_plan(plan_file)
    runs_dir = plan.runs_dir(runs_dir)
    pins = read_json(runs_dir / PINS, {})
    rows = []
    for entry in plan.runs:
        run_dir = runs_dir / entry["name"]
        planned = entry.get("epochs", TrainConfig.epochs)
        history = read_history(run_dir)
        done = len(history)
        state = run_state(run_dir)
        seconds = float(history["seconds"].iloc[-1]) if done else 0.0
        per_epoch = seconds / done if done else float("nan")
        left = 0.0 if state in DONE else per_epoch * (planned - done)
        differ = plan_differences(_resolved(entry, plan, runs_dir) or entry, run_dir)
        if differ:
            state += f" (plan differs: {', '.join(differ)})"
        rows.append({"run": entry["name"], "state": state, "epochs": f"{done}/{planned}",
                     "best val accuracy": f"{history['val_accuracy'].max():.4f}" if "val_accuracy" in history
                     else "-",
                     "minutes": f"{seconds / 60:.0f}",
                     "minutes left": "?" if left != left else  # NaN: no epoch timed yet
                     ("<= " if entry.get("early_stopping") and left else "") + f"{left / 60:.0f}",
                     "commit": pins.get(entry["name"], "")[:12]})
    return pd.DataFrame(rows)


def write_status(plan_file, out_dir, runs_dir=None) -> Path:
    """Copy each run's history, config, state, manifest and learning curves (and, once it
    is finished, its model: :func:`publish_model`) into ``out_dir/<run>/`` and write
    ``out_dir/status.md``; returns the status file. An unfinished run's published state
    is the table's (``interrupted``, for one whose process was killed) with its epochs done;
    once its process has stopped, what it needs to go on is published too
    (:func:`publish_resume_state`); a running run's earlier copy is left as it is."""
    plan = load_plan(plan_file)
    runs_dir = plan.runs_dir(runs_dir)
    out_dir = Path(out_dir)
    table = status_table(plan_file, runs_dir)
    runner = lock_holder(runs_dir)  # while it runs, a run may be writing what a resume reads
    exported = []
    for entry in plan.runs:
        run_dir, published = runs_dir / entry["name"], out_dir / entry["name"]
        for name in PUBLISHED:
            if (run_dir / name).exists():
                (published / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run_dir / name, published / name)
            elif run_dir.exists():  # an earlier attempt's file, from before the run restarted
                (published / name).unlink(missing_ok=True)
        state = run_state(run_dir)
        if state not in DONE and (run_dir / TRAIN_STATE).exists():  # as the table says it, not as last written
            write_json(published / TRAIN_STATE, {**read_json(published / TRAIN_STATE), "state": state.replace(" ", "_"),
                                                 "epochs_done": len(read_history(run_dir))})
        if state in DONE and entry.get("publish_model", True):
            precision = publish_model(run_dir / MODEL, published / MODEL)
            exported += [entry["name"]] if precision == "bfloat16" else []
        resume = published / RESUME_DIR
        started = read_json(run_dir / MANIFEST, {}).get("created")
        if state in DONE or (run_dir.exists() and read_json(resume / MANIFEST, {}).get("created") != started):
            shutil.rmtree(resume, ignore_errors=True)  # nothing to go on from, or an earlier attempt's
        if state not in (*DONE, "running", "not started") and started and runner is None:
            publish_resume_state(run_dir, resume)
    status = out_dir / STATUS
    status.parent.mkdir(parents=True, exist_ok=True)
    about = "\n".join(f"- **{e['name']}**: {e.get('about', '')}" for e in plan.runs)
    exports = (f"Published as bfloat16 exports (float32 over {MAX_MODEL_BYTES / 1e6:.0f} MB): "
               f"{', '.join(exported)}.\n\n" if exported else "")
    resumable = [e["name"] for e in plan.runs if (out_dir / e["name"] / RESUME_DIR / MANIFEST).exists()]
    exports += (f"Unfinished, published with what they need to go on where they stopped (`long-runs restore` on "
                f"a new clone): {', '.join(resumable)}.\n\n" if resumable else "")
    exports += (f"The runner was running (process {runner.get('pid')}): stop it (`long-runs stop`) and write "
                f"this again to publish where its runs stopped.\n\n" if runner is not None else "")
    shown = Path(plan_file).resolve()
    shown = shown.relative_to(plan.root) if shown.is_relative_to(plan.root) else shown.name
    status.write_text(f"# Long runs: status\n\nPlan: `{shown}`. Regenerate with "
                      f"`python -m fer_utils long-runs status --write {out_dir}`.\n\n"
                      + "\n".join(markdown_table(table.columns, table.values)) + f"\n\n{exports}{about}\n")
    return status


def publish_resume_state(run_dir: Path, target: Path) -> None:
    """Copy the files of a stopped run that a resume reads into ``target``: :data:`RESUMED`,
    its complete checkpoint (as ``backup/``) and, when it validates, its best model so far
    (without validation the next epoch writes it); an earlier copy is replaced whole (written
    beside it, then swapped in)."""
    new = target.with_name(target.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    copies = {name: name for name in RESUMED}
    if backup := find_backup(run_dir):
        copies[backup.name] = BACKUP
    if "val_accuracy" in read_history(run_dir):
        copies[MODEL] = MODEL
    for name, copy in copies.items():
        if (run_dir / name).is_dir():
            shutil.copytree(run_dir / name, new / copy)
        elif (run_dir / name).exists():
            shutil.copy2(run_dir / name, new / copy)
    shutil.rmtree(target, ignore_errors=True)
    new.rename(target)


def publish_model(source: Path, target: Path, max_bytes: int = MAX_MODEL_BYTES) -> str | None:
    """Publish a finished run's model: copied when at most ``max_bytes``, else written as a
    bfloat16 export for inference. A target as recent as its source and within the limit is
    left as it is. Returns the precision published (:func:`stored_precision`), None when the
    run has no model."""
    if not source.exists():
        return None
    if not (target.exists() and target.stat().st_mtime_ns == source.stat().st_mtime_ns
            and target.stat().st_size <= max_bytes):
        if source.stat().st_size > max_bytes:
            from fer_utils.models import export_for_inference  # noqa: PLC0415 (keras loads only here)
            from fer_utils.predict import load_model  # noqa: PLC0415
            export_for_inference(load_model(source), "bfloat16").save(target)
            os.utime(target, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
        else:
            shutil.copy2(source, target)
    return stored_precision(target)


def stored_precision(model_file: Path) -> str:
    """``bfloat16`` for a model file whose layers hold bfloat16 variables (an export for
    inference), else ``float32``; read from the file's config without loading the model."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{model_file}: not a readable Keras model file ({error})") from None

    def policies(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                yield node.get("config", {}).get("name")
            for value in node.values():
                yield from policies(value)
        elif isinstance(node, list):
            for value in node:
                yield from policies(value)

    return "bfloat16" if "bfloat16" in policies(config) else "float32"


def restore_runs(plan_file, published_dir=None, runs_dir=None) -> list[str]:
    """Recreate the folders of the plan's runs that this checkout lacks (a new clone, a lost
    ``runs/``) from their published copies (``status --write``), so that the runner does not
    train finished runs again, the runs that learn from them find their models, and a stopped
    unfinished run goes on where it stopped; returns their names. A restored finished run holds
    the published model (a bfloat16 export where the float32 one was over the size limit;
    ``restored.json`` says which), an unfinished one its published ``resume/`` copy; each is
    pinned to the commit its manifest records (refused, before anything is restored, when a
    stopped run's commit is not in this clone). An unfinished run published without that copy
    (it was running) starts anew. ``published_dir`` defaults to ``reports/long-runs/``."""
    plan = load_plan(plan_file)
    runs_dir, published_dir = plan.runs_dir(runs_dir), plan.published_dir(published_dir)
    if not published_dir.is_dir():
        raise DataError(f"{published_dir}: no such folder of published runs (long-runs status --write fills it)")
    if (holder := lock_holder(runs_dir)) is not None:
        raise OptionError(f"{runs_dir}: the plan is running (process {holder.get('pid')}); restore before starting it")
    runs_dir.mkdir(parents=True, exist_ok=True)
    restored = []
    with RunLock(runs_dir):  # the runner cannot start meanwhile
        sources = _published_runs(plan, published_dir)
        records = {name: _restore_record(entry, source, published_dir, plan.root)  # all checked first
                   for name, (entry, source) in sources.items() if not (runs_dir / name).exists()}
        pins = read_json(runs_dir / PINS, {})
        for name, (_, source) in sources.items():
            run_dir = runs_dir / name
            if name in records:
                partial = run_dir.with_name(f".restoring-{name}")  # renamed once whole: never half a run
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(source, partial, ignore=shutil.ignore_patterns(RESUME_DIR))
                write_json(partial / RESTORED, records[name])
                partial.rename(run_dir)
                restored.append(name)
            commit = read_json(run_dir / MANIFEST, {}).get("git_commit")
            if (run_dir / RESTORED).exists() and commit and name not in pins:  # also one a kill left unpinned
                pins[name] = commit
                write_json(runs_dir / PINS, pins)
    return restored


def _restore_record(entry: dict, source: Path, published_dir: Path, root: Path) -> dict:
    """What ``restored.json`` says of a run restored from ``source``: the published model's
    precision for a finished run; for a stopped one, the epochs its checkpoint holds, once the
    clone at ``root`` is known to hold the commit it goes on from."""
    if source.parent == published_dir:
        return {"from": str(source.resolve()), "model_precision": _published_precision(entry, source / MODEL)}
    commit = read_json(source / MANIFEST, {}).get("git_commit")
    if not commit:
        raise DataError(f"{source / MANIFEST}: no git commit recorded, so {entry['name']} cannot go on on its "
                        f"pinned code; remove {source} to start it anew; nothing restored")
    try:
        held = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root, capture_output=True)
    except OSError as error:
        raise OptionError(f"git is needed to restore {entry['name']} on its pinned code ({error})") from None
    if held.returncode:
        raise DataError(f"{source}: {entry['name']} stopped on commit {commit[:12]}, which the git work tree "
                        f"{root} does not hold; fetch it, or remove {source} to start {entry['name']} anew; "
                        f"nothing restored")
    return {"from": str(source.resolve()),
            "resumes_after_epoch": read_json(source / BACKUP / "state.json", {}).get("epoch", 0)}


def unrestored_runs(plan_file, published_dir=None, runs_dir=None) -> list[str]:
    """The plan's runs in ``published_dir``, finished or published to go on, that have no
    folder here: the runner would train them from the start (:func:`restore_runs` recreates them)."""
    plan = load_plan(plan_file)
    runs_dir = plan.runs_dir(runs_dir)
    return [name for name in _published_runs(plan, plan.published_dir(published_dir)) if not (runs_dir / name).exists()]


def _published_runs(plan: Plan, published_dir: Path) -> dict[str, tuple[dict, Path]]:
    """The plan's runs that ``published_dir`` can recreate, each with its entry and the folder
    to copy: ``<run>/`` for a finished run, ``<run>/resume/`` for a stopped unfinished one."""
    runs = {}
    for entry in plan.runs:
        published = published_dir / entry["name"]
        if read_json(published / TRAIN_STATE, {}).get("state", "").replace("_", " ") in DONE:
            runs[entry["name"]] = (entry, published)
        elif (published / RESUME_DIR / MANIFEST).exists():
            runs[entry["name"]] = (entry, published / RESUME_DIR)
    return runs


def _published_precision(entry: dict, model: Path) -> str | None:
    """:func:`stored_precision` of a finished run's published model; None for a run that
    publishes none, a named error when it is missing."""
    if model.exists():
        return stored_precision(model)
    if entry.get("publish_model", True):
        raise DataError(f"{model}: no such file, and {entry['name']} is finished: its model was not published "
                        f"(long-runs status --write, where its run folder is); nothing restored")
    return None


def restored_exports(entry: dict, runs_dir) -> list[str]:
    """The runs that ``entry`` learns from (``init_from``, ``teachers``) whose folders were
    restored with a bfloat16 export instead of the trained float32 model."""
    named = [entry.get("init_from")] + list(entry.get("teachers") or [])
    return [name for name in named if name and read_json(Path(runs_dir) / name / RESTORED, {})
            .get("model_precision") == "bfloat16"]
