"""Run folders: one per run, never written over, each with a manifest that makes it reproducible."""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

#: Packages whose versions every manifest records.
TRACKED_PACKAGES = ("fer-report", "tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas",
                    "scikit-learn", "scipy", "matplotlib", "seaborn", "pillow", "papermill",
                    "nbval", "opencv-python-headless")
MANIFEST = "manifest.json"


class RunExistsError(FileExistsError):
    """The run folder already holds a run that this one must not replace."""


def claim_run_dir(run_dir, data_hash: str, *, force: bool = False, resume: bool = False) -> Path:
    """Create ``run_dir`` for a run on data ``data_hash``, refusing to overwrite another run.

    A folder holding a run of *other* data is never touched. One holding a run of the same
    data is replaced only with ``force`` (or continued with ``resume``).
    """
    run_dir = Path(run_dir)
    manifest = run_dir / MANIFEST
    if run_dir.exists() and any(run_dir.iterdir()):
        recorded = json.loads(manifest.read_text()).get("data", {}).get("sha256") if manifest.exists() else None
        if recorded is not None and recorded != data_hash:
            raise RunExistsError(f"{run_dir}: holds a run of other data (sha256 {recorded[:12]}...); "
                                 f"choose another --out")
        if resume and recorded == data_hash:
            return run_dir
        if not force:
            raise RunExistsError(f"{run_dir}: already holds a run; pass --force to replace it"
                                 + (" or --resume to continue it" if recorded else ""))
        shutil.rmtree(run_dir)
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


def git_commit() -> str | None:
    """The project's git commit, suffixed ``-dirty`` when the work tree has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
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
    commit = git_commit()
    manifest = {
        "kind": kind,
        "created": earlier.get("created") or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": parameters,
        "data": {"source": str(data_source), "sha256": data_hash, "synthetic": synthetic},
        "git_commit": earlier.get("git_commit", commit),
        **({"git_commit_last": commit} if earlier and earlier.get("git_commit") != commit else {}),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        **(extra or {}),
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(run_dir) -> dict:
    """The manifest of a run folder."""
    return json.loads((Path(run_dir) / MANIFEST).read_text())
