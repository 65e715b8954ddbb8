import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fer_utils import DataError, OptionError
from fer_utils.cli import build_parser, main
from fer_utils.config import SEED_AUGMENTATION, TrainConfig
from fer_utils.long_runs import (
    load_plan,
    next_run,
    pinned_code,
    plan_differences,
    publish_model,
    reread_plan,
    restore_runs,
    restored_exports,
    run_parallel,
    run_plan,
    status_table,
    stored_precision,
    train_args,
    with_model_paths,
    write_status,
)
from fer_utils.models import check_model_options
from fer_utils.runs import RunLock
from fer_utils.train_cli import resolve_options

ROOT = Path(__file__).resolve().parent.parent
TINY = {"model": "vgg_gap", "model_options": {"widths": [8, 16], "convs": [1, 1]}, "epochs": 6, "batch_size": 16,
        "precision": "float32", "schedule": "plateau", "plateau_patience": 1, "early_stopping": 3,
        "augmentation": {"shear": 0.0}}


def write_plan(folder, runs, data="data.zip"):
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump({"data": str(data), "runs": runs}))
    return path


@pytest.fixture
def repo(tmp_path):
    """A git work tree holding a copy of the project's code, committed."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "fer_utils", repo / "fer_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", repo)
    for command in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    return repo


def test_code_is_pinned_only_from_a_git_commit(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(OptionError, match=r": not a git work tree with a commit; long runs pin the code of a commit"):
        pinned_code(tmp_path, tmp_path / "runs", "a")
    assert not (tmp_path / "runs" / ".pins.json").exists()


def test_a_pinned_commit_missing_from_the_clone_skips_its_run_and_says_how_to_go_on(repo):
    runs = repo / "runs"
    runs.mkdir()
    (runs / ".pins.json").write_text(json.dumps({"a": "0" * 40}))
    with pytest.raises(OptionError, match=r"a: cannot take the code of its pinned commit 000000000000 .*fatal.*; "
                                          r"fetch that commit, or remove the run's line from .*\.pins\.json"):
        pinned_code(repo, runs, "a")
    logged = []
    assert run_plan(write_plan(repo, [{"name": "a", **TINY}]), runs, log=logged.append) == 1
    assert logged[-1].startswith("a: cannot take the code of its pinned commit") and logged[-1].endswith(
        "; the run is skipped")


def test_plan_entries_are_checked_by_name(repo):
    with pytest.raises(OptionError, match=r"plan\.yaml: no runs planned \(a 'runs' list is needed\)"):
        load_plan(write_plan(repo, []))
    with pytest.raises(OptionError, match=r"plan\.yaml: no data entry; name the FER2013"):
        load_plan(write_plan(repo, [{"name": "a"}], data=""))
    with pytest.raises(OptionError, match="run b: unknown option.s. colour"):
        load_plan(write_plan(repo, [{"name": "a"}, {"name": "b", "colour": "red"}]))
    with pytest.raises(OptionError, match="run 2 needs a unique name"):
        load_plan(write_plan(repo, [{"name": "a"}, {"name": "a"}]))
    with pytest.raises(OptionError, match="run a: optimizer must be one of"):
        load_plan(write_plan(repo, [{"name": "a", "optimizer": "foo"}]))
    with pytest.raises(OptionError, match="run 1 needs a unique name without '/', got 2024"):
        load_plan(write_plan(repo, [{"name": 2024}]))
    with pytest.raises(OptionError, match="run a: init_from must be text, got None"):
        load_plan(write_plan(repo, [{"name": "a", "init_from": None}]))
    with pytest.raises(OptionError, match="run a: val_fraction must be a finite number, got 'most'"):
        load_plan(write_plan(repo, [{"name": "a", "val_fraction": "most"}]))
    plan = load_plan(write_plan(repo, [{"name": "a", **TINY}]))
    assert plan.root == repo and plan.data == repo / "data.zip" and plan.runs[0]["epochs"] == 6


def test_a_started_run_is_compared_with_the_options_its_entry_sets(repo):
    (repo / "plan.yaml").write_text("data: data.zip\nruns:\n  - {name: a, epochs: 6, learning_rate: 1e-3}\n")
    entry = load_plan(repo / "plan.yaml").runs[0]
    assert entry["learning_rate"] == 0.001  # YAML's text "1e-3", as the run saved it
    run_dir = repo / "runs" / "a"
    run_dir.mkdir(parents=True)
    # started on older code: another default label smoothing, an augmentation without erasing
    saved = {**dataclasses.asdict(TrainConfig(epochs=6, learning_rate=0.001, label_smoothing=0.3)),
             "val_fraction": 0.2}
    del saved["augmentation"]["erasing"]
    (run_dir / "manifest.json").write_text(json.dumps({"kind": "train", "parameters": saved}))
    assert plan_differences(entry, run_dir) == []
    assert plan_differences({**entry, "augmentation": {"erasing": 0.0}}, run_dir) == []
    assert plan_differences({**entry, "augmentation": {"flip": False}}, run_dir) == ["augmentation"]
    assert plan_differences({**entry, "val_fraction": 0.0, "epochs": 9}, run_dir) == ["val_fraction"]


def test_a_plan_that_is_not_valid_yaml_or_not_a_list_of_mappings_is_named(repo):
    path = repo / "plan.yaml"
    path.write_text("runs:\n  - name: a\n    epochs: [1, 2\n")
    with pytest.raises(OptionError, match=r"plan\.yaml: not valid YAML \(.*line 3"):
        load_plan(path)
    path.write_text("- name: a\n")
    with pytest.raises(OptionError, match=r"plan\.yaml: expected a mapping of options, got a list"):
        load_plan(path)
    path.write_text("data: d.zip\nruns:\n  - a\n")
    with pytest.raises(OptionError, match=r"plan\.yaml: run 1 is not a mapping of options \(got 'a'\)"):
        load_plan(path)


def test_plan_entry_becomes_train_options_that_the_train_command_reads():
    args = train_args({"name": "a", "about": "x", "publish_model": False, "epochs": 3, "nesterov": False,
                       "class_weighted": True, "model_options": {"widths": [8]}, "drop_test_duplicates": False,
                       "val_fraction": 0.0})
    assert args == ["--epochs", "3", "--no-nesterov", "--class-weighted", "--model-options", '{"widths": [8]}',
                    "--no-drop-test-duplicates", "--val-fraction", "0.0"]
    parsed = build_parser().parse_args(["train", "--data", "d.zip", "--out", "o", *args])
    assert (parsed.epochs, parsed.nesterov, parsed.class_weighted) == (3, False, True)
    assert parsed.model_options == {"widths": [8]}
    assert (parsed.drop_test_duplicates, parsed.val_fraction) == (False, 0.0)


@pytest.mark.parametrize("plan_file", ["long-runs.yaml", "gpu-runs.yaml", "gpu-rehearsal.yaml"])
def test_every_run_of_the_shipped_plans_is_a_valid_train_command(plan_file):
    plan = load_plan(Path(__file__).resolve().parent.parent / "configs" / plan_file)
    for entry in plan.runs:
        parsed = build_parser().parse_args(["train", "--data", "d.zip", "--out", "o", *train_args(entry)])
        config, data = resolve_options(parsed)
        check_model_options(config.model, config.model_options)
        chosen = {**dataclasses.asdict(config), **data}
        for key, value in entry.items():
            if key in chosen and key != "augmentation":
                assert chosen[key] == value, (entry["name"], key)
        assert entry.get("augmentation", {}).items() <= config.augmentation.items(), entry["name"]


def test_a_second_start_and_a_start_without_the_plans_data_are_refused(repo):
    plan = write_plan(repo, [{"name": "a", **TINY}])
    with RunLock(repo / "runs"):
        refused = long_runs(repo, "start", "--plan", str(plan))
    assert refused.returncode == 2 and f"the plan is already running (process {os.getpid()})" in refused.stderr
    missing = long_runs(repo, "start", "--plan", str(plan))
    assert missing.returncode == 2 and "data.zip: no such file; the plan's data entry names it" in missing.stderr
    assert not (repo / "runs" / "long-runs.log").exists()


def long_runs(repo, *args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run([sys.executable, "-m", "fer_utils", "long-runs", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


def test_killed_plan_resumes_on_its_pinned_code_with_the_history_of_an_uninterrupted_run(repo, synthetic_zip):
    long_first = {**TINY, "epochs": 25, "early_stopping": 0}  # long enough to be killed mid-run
    entries = [{"name": "first", **long_first}, {"name": "second", **TINY, "seed": 1, "publish_model": False}]
    plan = write_plan(repo, entries, data=synthetic_zip)
    reference = long_runs(repo, "run", "--plan", str(plan), "--runs", str(repo / "reference"))
    assert reference.returncode == 0, reference.stdout + reference.stderr
    started = long_runs(repo, "start", "--plan", str(plan))
    assert started.returncode == 0 and "runs/long-runs.log" in started.stdout, started.stderr
    runs, history = repo / "runs", repo / "runs" / "first" / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not history.exists() or len(history.read_text().splitlines()) < 3):
        time.sleep(0.1)
    runner = json.loads((runs / "run.lock").read_text())["pid"]
    group = Path(f"/proc/{runner}/autogroup")  # low priority beside other sessions too, where Linux groups them
    kept = "keeps its CPU share" in (runs / "long-runs.log").read_text()  # the kernel refused (logged)
    assert not group.exists() or kept or group.read_text().endswith(" nice 19\n"), group.read_text()
    os.killpg(runner, signal.SIGKILL)  # the runner and its training
    time.sleep(1)
    status = long_runs(repo, "status", "--plan", str(plan)).stdout
    assert "first interrupted" in " ".join(status.split()) and "not started" in status, status
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    published = repo / "published"  # what a session commits before it ends
    assert long_runs(repo, "status", "--plan", str(plan), "--write", str(published)).returncode == 0
    assert (published / "first" / "resume" / "backup" / "variables.npz").exists()
    train_py = repo / "fer_utils" / "train.py"  # the work tree changes; the runs must not notice
    train_py.write_text('raise SystemExit("the work tree\'s code ran")\n' + train_py.read_text())
    resumed = long_runs(repo, "run", "--plan", str(plan))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "first: resuming on code" in resumed.stdout and "second: starting on code" in resumed.stdout
    clone = repo / "new-clone-runs"  # a new clone, without runs/: restored from what was published
    restored = long_runs(repo, "restore", "--plan", str(plan), "--runs", str(clone), "--published", str(published))
    assert restored.returncode == 0 and restored.stdout.endswith(": first\n"), restored.stdout + restored.stderr
    epochs = json.loads((clone / "first" / "restored.json").read_text())["resumes_after_epoch"]
    assert epochs >= 1 and json.loads((clone / ".pins.json").read_text()) == {"first": commit}
    resumed = long_runs(repo, "run", "--plan", str(plan), "--runs", str(clone))
    assert "first: resuming on code" in resumed.stdout, resumed.stdout + resumed.stderr
    before = pd.read_csv(published / "first" / "resume" / "history.csv").head(epochs)  # the same epochs, not again
    pd.testing.assert_frame_equal(pd.read_csv(clone / "first" / "history.csv").head(epochs), before)
    for name, folder in (("first", runs), ("second", runs), ("first", clone)):
        expected, history = (pd.read_csv(f / name / "history.csv") for f in (repo / "reference", folder))
        assert list(history["epoch"]) == list(expected["epoch"])
        pd.testing.assert_frame_equal(history.drop(columns="seconds"), expected.drop(columns="seconds"),
                                      rtol=1e-4, atol=1e-6)
    assert json.loads((runs / "first" / "manifest.json").read_text())["git_commit"] == commit
    status = long_runs(repo, "status", "--plan", str(plan), "--write", str(repo / "published"))
    assert status.returncode == 0 and status.stdout.count(commit[:12]) == 2
    assert "interrupted" not in status.stdout and "running" not in status.stdout
    table = (repo / "published" / "status.md").read_text()
    assert "| first | completed | 25/25 |" in table and not (published / "first" / "resume").exists()
    assert (repo / "published" / "second" / "history.csv").read_text() == (runs / "second" / "history.csv").read_text()
    assert (repo / "published" / "first" / "model.keras").exists()
    assert not (repo / "published" / "second" / "model.keras").exists()  # publish_model: false


def test_plan_changes_to_a_started_run_are_named(tmp_path):
    options = {**TINY, "augmentation": {**SEED_AUGMENTATION, **TINY["augmentation"]}}
    (tmp_path / "train_config.json").write_text(json.dumps(dataclasses.asdict(TrainConfig(**options))))
    entry = {"name": "a", "about": "x", **TINY}
    assert plan_differences(entry, tmp_path) == [] and plan_differences(entry, tmp_path / "none") == []
    changed = {**entry, "epochs": 50, "learning_rate": 0.5, "seed": 3}
    assert plan_differences(changed, tmp_path) == ["learning_rate", "seed"]


def test_the_models_a_run_learns_from_are_compared_by_run_so_a_moved_checkout_resumes(tmp_path):
    started = TrainConfig(**TINY, init_from="/old/runs/a/model.keras", teachers=["/old/runs/b/model.keras"],
                          distill=0.5)
    (tmp_path / "train_config.json").write_text(json.dumps(dataclasses.asdict(started)))
    entry = {"name": "s", **TINY, "distill": 0.5}
    moved = {**entry, "init_from": "/new/runs/a/model.keras", "teachers": ["/new/runs/b/model.keras"]}
    assert plan_differences(moved, tmp_path) == []
    other = {**moved, "init_from": "/new/runs/c/model.keras", "teachers": ["/new/runs/b/model.keras", "x.keras"]}
    assert plan_differences(other, tmp_path) == ["init_from", "teachers"]


def test_a_finished_run_whose_entry_changed_has_no_minutes_left(repo):
    run_dir = repo / "runs" / "a"
    run_dir.mkdir(parents=True)
    (run_dir / "train_state.json").write_text(json.dumps({"state": "early_stopped"}))
    (run_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(TrainConfig(**TINY))))
    pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.3, 0.4], "seconds": [60.0, 120.0]}).to_csv(
        run_dir / "history.csv", index=False)
    row = status_table(write_plan(repo, [{"name": "a", **TINY, "seed": 5}])).iloc[0]
    assert (row["state"], row["minutes left"]) == ("early stopped (plan differs: seed)", "0")


def test_the_plan_is_read_again_before_each_run_and_a_broken_plan_stops_the_runner(repo, monkeypatch):
    runs = repo / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "train_state.json").write_text(json.dumps({"state": "early_stopped"}))
    path = write_plan(repo, [{"name": "a", **TINY}, {"name": "b", **TINY}])
    first = load_plan(path)
    assert next_run(first, runs, set())["name"] == "b" and next_run(first, runs, {"b"}) is None
    write_plan(repo, [{"name": "a", **TINY}, {"name": "c", **TINY}, {"name": "b", **TINY}])
    assert next_run(reread_plan(path), runs, {"b"})["name"] == "c"
    path.write_text("runs: [{name: a, epochs:")  # an edit half-saved, finished while the runner waits
    monkeypatch.setattr(time, "sleep", lambda seconds: write_plan(repo, [{"name": "a", **TINY}]))
    assert [run["name"] for run in reread_plan(path).runs] == ["a"]
    write_plan(repo, [{"name": "a", **TINY, "colour": "red"}])  # e.g. an option newer than the runner's code
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    logged = []
    assert reread_plan(path, logged.append) is None
    assert "unknown option(s) colour); the runner stops here" in logged[0]
    write_plan(repo, [{"name": "x", **TINY}, {"name": "y", **TINY}])
    real, started = subprocess.run, []

    def train(command, **kwargs):  # training x, someone saves a plan this runner cannot read
        if "--out" not in command:
            return real(command, **kwargs)
        started.append(Path(command[command.index("--out") + 1]).name)
        write_plan(repo, [{"name": "x", **TINY}, {"name": "y", **TINY, "colour": "red"}])
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", train)
    assert run_plan(path, repo / "other-runs", log=logged.append) == 1
    assert started == ["x"] and "the runner stops here" in logged[-1]


def test_a_run_that_starts_from_another_waits_for_its_model(repo):
    runs = repo / "runs"
    path = write_plan(repo, [{"name": "a", **TINY}, {"name": "b", **TINY, "init_from": "a"},
                             {"name": "c", **TINY, "init_from": "models/x.keras"}])
    plan = load_plan(path)
    with pytest.raises(OptionError, match="b: learns from run a, which is not started; it waits"):
        with_model_paths(plan.runs[1], plan, runs)
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "train_state.json").write_text(json.dumps({"state": "completed"}))
    assert with_model_paths(plan.runs[1], plan, runs)["init_from"] == str(runs / "a" / "model.keras")
    assert with_model_paths(plan.runs[2], plan, runs)["init_from"] == str(repo / "models" / "x.keras")
    assert with_model_paths(plan.runs[0], plan, runs) == plan.runs[0]
    student = {"name": "s", "teachers": ["a", "models/y.keras"], "distill": 0.5}
    assert with_model_paths(student, plan, runs)["teachers"] == [str(runs / "a" / "model.keras"),
                                                                 str(repo / "models" / "y.keras")]
    options = {**TINY, "augmentation": {**SEED_AUGMENTATION, **TINY["augmentation"]}}
    (runs / "b").mkdir()
    (runs / "b" / "train_config.json").write_text(json.dumps(dataclasses.asdict(
        TrainConfig(**options, init_from=str(runs / "a" / "model.keras")))))
    assert list(status_table(path, runs)["state"]) == ["completed", "interrupted", "not started"]


def test_a_killed_run_is_published_as_the_table_states_it(repo):
    runs, published = repo / "runs", repo / "published"
    (repo / "configs").mkdir()
    path = write_plan(repo / "configs", [{"name": "a", **TINY}, {"name": "b", **TINY}])
    (published / "b").mkdir(parents=True)  # published earlier; its run folder is not on this machine
    (published / "b" / "train_state.json").write_text(json.dumps({"state": "completed", "epochs_done": 6}))
    (runs / "a").mkdir(parents=True)  # its process wrote this at the start and was killed
    (runs / "a" / "train_state.json").write_text(json.dumps({"state": "running", "epochs_done": 0, "pid": 1}))
    pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.3, 0.4], "seconds": [60.0, 120.0]}).to_csv(
        runs / "a" / "history.csv", index=False)
    (runs / "a" / "figures").mkdir()
    (runs / "a" / "figures" / "learning_curves.png").write_bytes(b"png")
    (published / "a").mkdir()  # an earlier attempt's, lost with its folder: the restarted run has none yet
    (published / "a" / "manifest.json").write_text("{}")
    write_status(path, published, runs)
    assert not (published / "a" / "manifest.json").exists()
    assert (published / "a" / "figures" / "learning_curves.png").read_bytes() == b"png"
    assert json.loads((published / "a" / "train_state.json").read_text()) == {
        "state": "interrupted", "epochs_done": 2, "pid": 1}
    status = (published / "status.md").read_text()
    assert "| a | interrupted | 2/6 | 0.4000 | 2 | <= 4 |" in status and "Plan: `configs/plan.yaml`." in status
    assert json.loads((runs / "a" / "train_state.json").read_text())["state"] == "running"  # the run's own file
    assert json.loads((published / "b" / "train_state.json").read_text())["state"] == "completed"


def test_a_planned_run_waits_for_the_runs_it_learns_from(repo, monkeypatch):
    started, real = [], subprocess.run

    def train(command, **kwargs):
        if "--out" not in command:
            return real(command, **kwargs)
        out = Path(command[command.index("--out") + 1])
        started.append(out.name)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_state.json").write_text(json.dumps({"state": "running" if out.name == "broken" else "completed"}))
        return subprocess.CompletedProcess(command, int(out.name == "broken"))

    monkeypatch.setattr(subprocess, "run", train)
    plan = write_plan(repo, [{"name": "b", **TINY, "init_from": "a"}, {"name": "a", **TINY},
                             {"name": "c", **TINY, "teachers": ["broken"], "distill": 0.5}, {"name": "broken", **TINY}])
    logged = []
    assert run_plan(plan, log=logged.append) == 1  # broken failed; c waited for it in vain
    assert started == ["a", "b", "broken"]
    assert "b: learns from run a, which is not started; it waits until a is finished" in logged
    assert logged[-1] == "c: learns from run broken, which is interrupted; it waits until broken is finished"


def test_parallel_runs_start_a_run_once_the_run_it_starts_from_finished(repo, monkeypatch):
    started = []

    class Finished:
        def __init__(self, command, **kwargs):
            out = Path(command[command.index("--out") + 1])
            started.append(command)
            self.returncode = int(out.name == "broken")
            out.mkdir(parents=True)
            (out / "train_state.json").write_text(json.dumps({"state": "running" if self.returncode else "completed"}))

        def poll(self):
            return self.returncode

    real = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kw: (Finished if "--out" in command else real)(
        command, **kw))
    monkeypatch.setattr("fer_utils.data.load_dataset", lambda path: None)
    plan = write_plan(repo, [{"name": "b", **TINY, "init_from": "a"}, {"name": "a", **TINY},
                             {"name": "c", **TINY, "init_from": "broken"}, {"name": "broken", **TINY}])
    logged = []
    codes = run_parallel(plan, repo / "runs", jobs=2, log=logged.append)
    assert codes == {"a": 0, "broken": 1, "b": 0, "c": 1}
    assert [Path(c[c.index("--out") + 1]).name for c in started] == ["a", "broken", "b"]
    assert started[2][started[2].index("--init-from") + 1] == str(repo / "runs" / "a" / "model.keras")
    assert "c: not started, a run it learns from did not finish" in logged


def test_a_model_over_the_size_limit_is_published_as_a_bfloat16_export(tmp_path):
    import keras  # noqa: PLC0415 (keras only for this test)

    from fer_utils.models import build_model  # noqa: PLC0415

    assert publish_model(tmp_path / "none.keras", tmp_path / "copy.keras") is None
    source = tmp_path / "model.keras"
    build_model("vgg_gap", widths=(16, 32), convs=(1, 1)).save(source)
    assert publish_model(source, tmp_path / "copy.keras") == "float32"
    assert (tmp_path / "copy.keras").read_bytes() == source.read_bytes()
    assert publish_model(source, tmp_path / "small.keras", max_bytes=1000) == "bfloat16"
    exported = keras.models.load_model(tmp_path / "small.keras")
    assert exported.layers[1].dtype_policy.name == "bfloat16" and exported.layers[-1].dtype_policy.name == "float32"
    assert (stored_precision(tmp_path / "small.keras"), stored_precision(source)) == ("bfloat16", "float32")
    written = (tmp_path / "small.keras").stat().st_mtime_ns
    assert publish_model(source, tmp_path / "small.keras", max_bytes=1000) == "bfloat16"
    assert (tmp_path / "small.keras").stat().st_mtime_ns == written  # not exported again
    assert publish_model(source, tmp_path / "copy.keras", max_bytes=1000) == "bfloat16"  # the copy is over it now


def test_a_stopped_run_is_published_with_what_it_needs_to_go_on_and_a_running_or_finished_one_is_not(repo):
    runs, published = repo / "runs", repo / "published"
    path = write_plan(repo, [{"name": "a", **TINY}])
    run, resume = runs / "a", published / "a" / "resume"
    (run / "teacher_targets.parts").mkdir(parents=True)
    (run / "teacher_targets.parts" / "0.npy").write_bytes(b"teacher 0")
    (run / "manifest.json").write_text(json.dumps({"created": "first attempt"}))
    (run / "train_state.json").write_text(json.dumps({"state": "running", "epochs_done": 0}))
    for lock in (run, runs):  # the run is training; the runner runs (the run is between two steps)
        with RunLock(lock):
            write_status(path, published, runs)
        assert not resume.exists()
    assert "The runner was running (process " in (published / "status.md").read_text()
    write_status(path, published, runs)  # stopped
    assert sorted(str(p.relative_to(resume)) for p in resume.rglob("*")) == [
        "manifest.json", "teacher_targets.parts", "teacher_targets.parts/0.npy", "train_state.json"]
    assert "Unfinished, published with what they need to go on where they stopped" in (
        published / "status.md").read_text()
    shutil.rmtree(run / "teacher_targets.parts")  # it went on: the targets are whole, two epochs done
    (run / "teacher_targets.npy").write_bytes(b"targets")
    (run / "backup.old").mkdir()  # killed between the two renames of a checkpoint swap: the old one is whole
    (run / "backup.old" / "state.json").write_text(json.dumps({"epoch": 2}))
    (run / "backup.new").mkdir()
    (run / "model.keras").write_bytes(b"the last epoch's model")  # no validation: the next epoch writes it
    pd.DataFrame({"epoch": [0, 1], "accuracy": [0.3, 0.4], "seconds": [60.0, 120.0]}).to_csv(
        run / "history.csv", index=False)
    write_status(path, published, runs)
    assert sorted(str(p.relative_to(resume)) for p in resume.rglob("*")) == [
        "backup", "backup/state.json", "history.csv", "manifest.json", "teacher_targets.npy", "train_state.json"]
    pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.3, 0.4], "seconds": [60.0, 120.0]}).to_csv(
        run / "history.csv", index=False)
    write_status(path, published, runs)
    assert (resume / "model.keras").read_bytes() == b"the last epoch's model"  # validated: its best so far
    (run / "manifest.json").write_text(json.dumps({"created": "second attempt"}))  # restarted, running
    with RunLock(run):
        write_status(path, published, runs)
    assert not resume.exists()  # the first attempt's copy does not go with the second's history
    (run / "train_state.json").write_text(json.dumps({"state": "completed"}))
    (run / "model.keras").unlink()
    write_status(path, published, runs)
    assert not resume.exists() and (published / "a" / "manifest.json").exists()


def test_stop_ends_the_runner_and_says_when_none_runs(repo):
    from fer_utils.long_runs import stop_runner  # noqa: PLC0415

    path, runs = write_plan(repo, [{"name": "a", **TINY}]), repo / "runs"
    runs.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from fer_utils.runs import RunLock\n"
                               "with RunLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(300)",
                               str(runs)], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert holder.stdout.readline() == "locked\n"
    assert stop_runner(path, runs, wait=30) == holder.pid
    assert holder.wait(timeout=5) == -signal.SIGTERM
    assert stop_runner(path, runs) is None
    assert main(["long-runs", "stop", "--plan", str(path), "--runs", str(runs)]) == 0


def test_finished_runs_lost_with_the_checkout_are_restored_from_their_published_copies(repo):
    from fer_utils.models import build_model  # noqa: PLC0415 (keras only for this test)

    runs, published = repo / "runs", repo / "published"
    path = write_plan(repo, [{"name": name, **TINY} for name in ("a", "b", "c", "d")])
    for name, state in (("a", "early_stopped"), ("b", "interrupted"), ("d", "completed")):
        (published / name / "figures").mkdir(parents=True)
        (published / name / "train_state.json").write_text(json.dumps({"state": state}))
        (published / name / "manifest.json").write_text(json.dumps({"git_commit": f"{name * 40}"}))
    build_model("vgg_gap", widths=(8, 16), convs=(1, 1)).save(published / "a" / "model.keras")
    (runs / "d").mkdir(parents=True)  # on this machine already: left as it is
    assert restore_runs(path, published, runs) == ["a"]
    assert sorted(p.name for p in (runs / "a").iterdir()) == [
        "figures", "manifest.json", "model.keras", "restored.json", "train_state.json"]
    assert json.loads((runs / "a" / "restored.json").read_text()) == {
        "from": str(published.resolve() / "a"), "model_precision": "float32"}
    assert status_table(path, runs)["commit"].tolist() == ["a" * 12, "", "", ""]
    assert next_run(load_plan(path), runs, set())["name"] == "b"  # its checkpoint was not published: anew
    assert not (runs / "b").exists() and not any((runs / "d").iterdir())
    assert restore_runs(path, published, runs) == []  # a second time: nothing left to restore
    student = {"name": "s", "init_from": "a", "teachers": ["d", "a"]}
    assert restored_exports(student, runs) == []  # a's model is float32, d was trained here
    (runs / "a" / "restored.json").write_text(json.dumps({"model_precision": "bfloat16"}))
    assert restored_exports(student, runs) == ["a", "a"]
    with pytest.raises(DataError, match=r"elsewhere: no such folder of published runs"):
        restore_runs(path, repo / "elsewhere", runs)
    with RunLock(runs), pytest.raises(OptionError, match="the plan is running"):
        restore_runs(path, published, runs)
    shutil.rmtree(runs / "a")
    (published / "a" / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"published/a/model\.keras: not a readable Keras model file"):
        restore_runs(path, published, runs)
    assert not (runs / "a").exists()


def test_a_stopped_run_is_restored_only_when_the_clone_holds_its_pinned_commit(repo, monkeypatch, capsys):
    runs, published = repo / "runs", repo / "published"
    path = write_plan(repo, [{"name": "a", **TINY}, {"name": "b", **TINY}])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    for name, commit in (("a", head), ("b", "b" * 40)):
        (published / name / "resume").mkdir(parents=True)
        (published / name / "train_state.json").write_text(json.dumps({"state": "interrupted"}))
        (published / name / "resume" / "manifest.json").write_text(json.dumps({"git_commit": commit}))
    with pytest.raises(DataError, match=r"published/b/resume: b stopped on commit bbbbbbbbbbbb, which the git "
                                        r"work tree .*repo does not hold; fetch it, or remove .*published/b/resume "
                                        r"to start b anew; nothing restored"):
        restore_runs(path, published, runs)
    (published / "b" / "resume" / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match=r"b/resume/manifest\.json: no git commit recorded"):
        restore_runs(path, published, runs)
    assert not (runs / "a").exists()
    shutil.rmtree(published / "b" / "resume")
    monkeypatch.chdir(repo.parent)  # relative folders are the caller's, as for every command
    assert main(["long-runs", "restore", "--plan", "repo/plan.yaml", "--published", "repo/published",
                 "--runs", "repo/runs"]) == 0
    assert capsys.readouterr().out == f"restored 1 runs (finished, or stopped to go on) from {published}: a\n"
    assert json.loads((runs / ".pins.json").read_text()) == {"a": head}


def test_a_restore_checks_every_published_model_first_and_is_whole_or_not_at_all(repo, monkeypatch, capsys):
    from fer_utils import long_runs  # noqa: PLC0415
    from fer_utils.models import build_model  # noqa: PLC0415 (keras only for this test)

    runs, published = repo / "runs", repo / "published"
    path = write_plan(repo, [{"name": "a", **TINY}, {"name": "e", **TINY}])
    for name in ("a", "e"):
        (published / name).mkdir(parents=True)
        (published / name / "train_state.json").write_text(json.dumps({"state": "completed"}))
        (published / name / "manifest.json").write_text(json.dumps({"git_commit": name * 40}))
    build_model("vgg_gap", widths=(8, 16), convs=(1, 1)).save(published / "a" / "model.keras")
    assert long_runs.unrestored_runs(path, published, runs) == ["a", "e"]
    monkeypatch.setattr(long_runs, "start_detached", lambda plan, runs_dir: runs / "long-runs.log")
    assert main(["long-runs", "start", "--plan", str(path), "--runs", str(runs), "--published", str(published)]) == 0
    assert "warning: 2 runs published in " in capsys.readouterr().err
    monkeypatch.undo()
    with pytest.raises(DataError, match=r"published/e/model\.keras: no such file, and e is finished: its model "
                                        r"was not published .*; nothing restored"):
        restore_runs(path, published, runs)
    assert not (runs / "a").exists()
    path = write_plan(repo, [{"name": "a", **TINY}, {"name": "e", **TINY, "publish_model": False}])

    def killed(target, value):  # the process dies while it writes a's record
        raise KeyboardInterrupt

    monkeypatch.setattr(long_runs, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        restore_runs(path, published, runs)
    assert not (runs / "a").exists() and (runs / ".restoring-a").exists()
    monkeypatch.undo()
    assert restore_runs(path, published, runs) == ["a", "e"]
    assert not (runs / ".restoring-a").exists() and long_runs.unrestored_runs(path, published, runs) == []
    assert json.loads((runs / "e" / "restored.json").read_text())["model_precision"] is None
    (runs / ".pins.json").write_text(json.dumps({"e": "e" * 40}))  # a kill fell before a's pin was written
    assert restore_runs(path, published, runs) == []
    assert json.loads((runs / ".pins.json").read_text()) == {"a": "a" * 40, "e": "e" * 40}
