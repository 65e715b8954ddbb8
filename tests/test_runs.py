import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from fer_utils import DataError, long_runs, runs
from fer_utils.runs import (
    RunExistsError,
    RunLock,
    RunLockedError,
    claim_run_dir,
    lock_holder,
    package_versions,
    read_manifest,
    write_manifest,
)


def make_run(path, data_hash):
    claim_run_dir(path, data_hash)
    write_manifest(path, kind="test", parameters={"a": 1}, data_source="x.zip", data_hash=data_hash, synthetic=True)
    (path / "result.txt").write_text("keep me")


def test_manifest_records_parameters_data_versions_and_commit(tmp_path):
    make_run(tmp_path / "run", "a" * 64)
    manifest = read_manifest(tmp_path / "run")
    assert manifest["parameters"] == {"a": 1}
    assert manifest["data"] == {"source": "x.zip", "sha256": "a" * 64, "synthetic": True}
    assert "numpy" in manifest["packages"] and "git_commit" in manifest and manifest["python"]


def test_run_of_other_data_is_never_replaced(tmp_path):
    make_run(tmp_path / "run", "a" * 64)
    for force in (False, True):
        with pytest.raises(RunExistsError, match="holds a run of other data"):
            claim_run_dir(tmp_path / "run", "b" * 64, force=force)
    assert (tmp_path / "run" / "result.txt").read_text() == "keep me"


def test_own_run_is_replaced_only_with_force_or_continued_with_resume(tmp_path):
    make_run(tmp_path / "run", "a" * 64)
    with pytest.raises(RunExistsError, match="pass --force to replace it$"):
        claim_run_dir(tmp_path / "run", "a" * 64)
    with pytest.raises(RunExistsError, match="pass --force to replace it or --resume to continue it"):
        claim_run_dir(tmp_path / "run", "a" * 64, resumable=True)
    assert claim_run_dir(tmp_path / "run", "a" * 64, resume=True) == tmp_path / "run"
    assert (tmp_path / "run" / "result.txt").exists()
    claim_run_dir(tmp_path / "run", "a" * 64, force=True)
    assert list((tmp_path / "run").iterdir()) == []


def test_a_replaced_run_keeps_its_discussion_checks_and_fer_package_scores(tmp_path):
    make_run(tmp_path / "run", "a" * 64)
    (tmp_path / "run" / "discussion.md").write_text("by hand")
    (tmp_path / "run" / "fer_package.json").write_text("{}")
    (tmp_path / "run" / "checks.md").write_text("# checks")
    claim_run_dir(tmp_path / "run", "a" * 64, force=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checks.md", "discussion.md", "fer_package.json"]
    assert (tmp_path / "run" / "discussion.md").read_text() == "by hand"


def test_adopt_run_copies_a_finished_training_run_and_names_what_is_missing(tmp_path):
    source = tmp_path / "long-runs" / "a"
    source.mkdir(parents=True)
    for name, text in (("model.keras", "m"), ("history.csv", "h"), ("train_config.json", "{}"),
                       ("train_state.json", '{"state": "running"}')):
        (source / name).write_text(text)
    with pytest.raises(FileNotFoundError, match="its state is 'running'; not a finished training run"):
        runs.adopt_run(tmp_path / "study", "a", "../long-runs/a")
    (source / "train_state.json").write_text('{"state": "early_stopped"}')
    target = runs.adopt_run(tmp_path / "study", "a", "../long-runs/a")
    assert target == tmp_path / "study" / "models" / "a"
    assert sorted(p.name for p in target.iterdir()) == ["history.csv", "model.keras", "train_config.json",
                                                        "train_state.json"]
    (source / "model.keras").unlink()
    with pytest.raises(FileNotFoundError, match=r"long-runs/a: no model\.keras; not a finished training run"):
        runs.adopt_run(tmp_path / "study", "b", source)


def test_folder_that_is_not_a_run_is_never_replaced_even_with_force(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(RunExistsError, match="is not a run folder .no manifest.json.; it is never replaced"):
            claim_run_dir(tmp_path, "a" * 64, force=force)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_of_a_missing_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        claim_run_dir(tmp_path / "none", "a" * 64, resume=True)


def test_lock_refuses_a_second_writer_and_is_released_on_exit(tmp_path):
    with RunLock(tmp_path):
        holder = json.loads((tmp_path / "run.lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["started"]
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}"):
            RunLock(tmp_path).__enter__()
        make_run_manifest(tmp_path)
        with pytest.raises(RunLockedError, match="in use by process"):
            claim_run_dir(tmp_path, "a" * 64, force=True)
    assert lock_holder(tmp_path) is None
    with RunLock(tmp_path):  # free again
        pass


def test_a_lock_being_checked_does_not_refuse_its_writer(tmp_path):
    (tmp_path / "run.lock").write_text("")
    with (tmp_path / "run.lock").open() as probe:  # lock_holder's shared lock, held a moment by another process
        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        threading.Timer(0.05, probe.close).start()
        with RunLock(tmp_path):
            assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()


def test_a_held_lock_whose_holder_is_not_yet_written_still_counts_as_held(tmp_path):
    with (tmp_path / "run.lock").open("a+") as handle:  # RunLock between its flock and its write
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert lock_holder(tmp_path) == {}
        assert long_runs.run_state(tmp_path) == "running"


def test_a_lock_whose_holder_cannot_be_written_is_released(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.json, "dumps", lambda value: 1 / 0)
    with pytest.raises(ZeroDivisionError) as raised:  # its traceback keeps the frames alive
        RunLock(tmp_path).__enter__()
    monkeypatch.undo()
    assert lock_holder(tmp_path) is None and raised.value


def test_unreadable_json_names_its_file(tmp_path):
    (tmp_path / "train_state.json").write_text("<<<<<<< HEAD\n")
    with pytest.raises(DataError, match=r"train_state\.json: not valid JSON \(Expecting value: line 1"):
        runs.read_json(tmp_path / "train_state.json")
    assert runs.read_json(tmp_path / "none.json", {}) == {}


def test_a_replacement_killed_midway_loses_nothing(tmp_path, monkeypatch):
    make_run(tmp_path / "run", "a" * 64)
    (tmp_path / "run" / "discussion.md").write_text("by hand")
    monkeypatch.setattr(runs.Path, "mkdir", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        claim_run_dir(tmp_path / "run", "a" * 64, force=True)
    monkeypatch.undo()
    kept = [p for p in tmp_path.rglob("discussion.md")]
    assert [p.read_text() for p in kept] == ["by hand"] and len(list(tmp_path.rglob("result.txt"))) == 1
    make_run(tmp_path / "run", "a" * 64)  # run again; the folder set aside is not deleted unread
    with pytest.raises(RunExistsError, match=r"\.replaced-run: left by a replacement of .*run that was stopped"):
        claim_run_dir(tmp_path / "run", "a" * 64, force=True)


def test_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "x"}))
    assert lock_holder(tmp_path) is None
    with RunLock(tmp_path):
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()


def make_run_manifest(path):
    write_manifest(path, kind="test", parameters={}, data_source="x.zip", data_hash="a" * 64, synthetic=True)


def test_package_versions_lists_installed_packages_only(monkeypatch):
    monkeypatch.setattr(runs, "TRACKED_PACKAGES", ("numpy", "no-such-package"))
    versions = package_versions()
    assert set(versions) == {"numpy"} and versions["numpy"].count(".") >= 1


def test_rewritten_manifest_keeps_the_starting_commit_and_time(tmp_path, monkeypatch):
    options = dict(kind="train", parameters={}, data_source="x.zip", data_hash="ab", synthetic=False)
    monkeypatch.setattr(runs, "git_commit", lambda ignore=None: "aaa")
    write_manifest(tmp_path, **options)
    first = read_manifest(tmp_path)
    write_manifest(tmp_path, **options, extra={"status": "running"})
    assert "git_commit_last" not in read_manifest(tmp_path)
    monkeypatch.setattr(runs, "git_commit", lambda ignore=None: "bbb-dirty")
    write_manifest(tmp_path, **options, extra={"status": "complete"})
    manifest = read_manifest(tmp_path)
    assert (manifest["git_commit"], manifest["git_commit_last"]) == ("aaa", "bbb-dirty")
    assert manifest["created"] == first["created"] and manifest["status"] == "complete"


def test_trained_models_best_first_and_a_named_error_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"training\.json: not found or empty; run the training notebook"):
        runs.trained_models(tmp_path)
    runs.write_json(tmp_path / runs.TRAINING, [{"model": "all", "best val_accuracy": None},
                                               {"model": "a", "best val_accuracy": 0.4},
                                               {"model": "b", "best val_accuracy": 0.6}])
    assert runs.trained_models(tmp_path) == ["b", "a", "all"]  # a run without validation split last
    assert runs.model_path(tmp_path, "b") == tmp_path / "models" / "b" / "model.keras"
    assert runs.model_dir(tmp_path) == tmp_path and not list(tmp_path.glob(".tmp-*"))


def test_models_validated_on_another_split_rank_after_the_study_split_and_before_no_split(tmp_path):
    runs.write_json(tmp_path / runs.TRAINING, [{"model": "all", "best val_accuracy": None},
                                               {"model": "a", "best val_accuracy": 0.4},
                                               {"model": "seed1", "best val_accuracy": 0.9},
                                               {"model": "b", "best val_accuracy": 0.6}])
    for name, seed in (("a", 0), ("seed1", 1), ("b", 0), ("all", 0)):
        runs.model_dir(tmp_path, name).mkdir(parents=True)
        runs.write_json(runs.model_dir(tmp_path, name) / runs.TRAIN_CONFIG, {"seed": seed})
    assert runs.trained_models(tmp_path) == ["seed1", "b", "a", "all"]  # no manifest: the seed is unknown
    runs.write_json(tmp_path / runs.MANIFEST, {"parameters": {"seed": 0}})
    assert runs.other_split_models(tmp_path, ["a", "seed1", "b", "all"]) == {"seed1"}
    assert runs.trained_models(tmp_path) == ["b", "a", "seed1", "all"]


def test_beside_model_is_the_best_other_run_of_the_architecture_else_the_runner_up(tmp_path):
    runs.write_json(tmp_path / runs.TRAINING, [{"model": m, "best val_accuracy": v} for m, v in
                                               (("wide", 0.7), ("seed-a", 0.6), ("seed-b", 0.65), ("res", 0.68))])
    for name, architecture in (("wide", "vgg_gap"), ("seed-a", "seed_cnn"), ("seed-b", "seed_cnn"), ("res", "res_gap")):
        runs.model_dir(tmp_path, name).mkdir(parents=True)
        runs.write_json(runs.model_dir(tmp_path, name) / runs.TRAIN_CONFIG, {"model": architecture})
    assert runs.beside_model(tmp_path, "wide") == "seed-b"
    assert runs.beside_model(tmp_path, "seed-b") == "seed-a"
    assert runs.beside_model(tmp_path, "wide", architecture="mobilenet") == "res"
    runs.write_json(tmp_path / runs.TRAINING, [{"model": "wide", "best val_accuracy": 0.7}])
    assert runs.beside_model(tmp_path, "wide") is None


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_changes_inside_the_run_folder_being_written_do_not_make_the_commit_dirty(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
                               *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()

    tracked = tmp_path / "reports" / "study" / "report.md"
    tracked.parent.mkdir(parents=True)
    tracked.write_text("report")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "study")
    commit = git("rev-parse", "HEAD")
    assert runs.git_commit(root=tmp_path) == commit
    tracked.write_text("changed")
    assert runs.git_commit(root=tmp_path) == commit + "-dirty"
    assert runs.git_commit(ignore=tracked.parent, root=tmp_path) == commit
