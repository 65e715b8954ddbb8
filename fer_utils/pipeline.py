"""Run every notebook of ``notebooks/`` in order with papermill, into one run folder."""

from __future__ import annotations

import time
from importlib.util import find_spec
from pathlib import Path

import papermill as pm

from fer_utils import PROFILES, OptionError
from fer_utils.config import read_yaml
from fer_utils.data import load_dataset
from fer_utils.report import write_report
from fer_utils.runs import FIGURES_DIR, NOTEBOOKS_DIR, RunLock, claim_run_dir, write_manifest
from fer_utils.synthetic import default_dataset

ROOT = Path(__file__).resolve().parent.parent


class PipelineError(RuntimeError):
    """A notebook failed: the message names the notebook and the cell."""


def shipped(folder: str, package: str) -> Path:
    """``folder`` of a source checkout, or the same files installed as ``package`` data
    (``pip install .`` ships notebooks/ and the profiles; see pyproject.toml)."""
    checkout = ROOT / folder
    if checkout.is_dir():
        return checkout
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(f"{checkout}: not found, and {package} is not installed: "
                            f"run the pipeline from a checkout or a `pip install` of the project")
    return Path(next(iter(spec.submodule_search_locations)))


#: Profile keys the pipeline reads itself; every other key must be a notebook parameter.
PIPELINE_KEYS = {"synthetic"}
#: Notebook parameters the pipeline sets itself, never from a profile.
SET_BY_PIPELINE = {"data", "run_dir", "profile", "skip_bad", "resize"}


def load_profile(profile: str) -> dict:
    """The parameters of ``configs/<profile>.yaml``; a key that neither the pipeline nor any
    notebook's ``parameters`` cell reads is an error (a typo would otherwise be ignored)."""
    path = shipped("configs", "fer_utils.profiles") / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such profile (have: {', '.join(PROFILES)})")
    config = read_yaml(path)
    declared = set(PIPELINE_KEYS).union(*(pm.inspect_notebook(str(p)) for p in notebook_paths()))
    unknown = sorted(set(config) - declared)
    if unknown:
        raise OptionError(f"{path}: unknown key(s) {', '.join(unknown)}; no notebook declares them "
                          f"(known: {', '.join(sorted(declared - SET_BY_PIPELINE))})")
    reserved = sorted(set(config) & SET_BY_PIPELINE)
    if reserved:
        raise OptionError(f"{path}: {', '.join(reserved)} cannot be set in a profile; the pipeline sets them "
                          f"(give them as pipeline options: --data, --out, --skip-bad, --resize)")
    return config


def notebook_paths() -> list[Path]:
    """The pipeline's notebooks, in the order they run (by file name)."""
    return sorted(shipped("notebooks", "fer_utils.notebooks").glob("[0-9]*.ipynb"))


def run_pipeline(data=None, out=None, *, profile: str = "smoke", force: bool = False,
                 skip_bad: bool = False, resize: bool = False, notebooks=None) -> Path:
    """Execute the notebooks for ``data`` (default: generated synthetic data) into ``out``.

    Every notebook gets the profile's parameters that its ``parameters`` cell declares,
    plus ``data``, ``run_dir``, ``profile``, ``skip_bad`` and ``resize`` (as in
    :func:`fer_utils.data.load_dataset`). Executed notebooks go to
    ``<out>/notebooks/``, figures to ``<out>/figures/``; ``manifest.json`` records the
    parameters, data hash, package versions, git commit and each notebook's status. The
    last step assembles ``report.md`` and ``report.html`` from ``metrics.json`` and the figures.
    """
    config = load_profile(profile)
    source = Path(data) if data else default_dataset(seed=config.get("seed", 0), **config.get("synthetic", {}))
    dataset = load_dataset(source, skip_bad=skip_bad, resize=resize)  # checks it, warms the notebooks' cache
    name = "synthetic" if dataset.synthetic else source.stem
    reports = ROOT / "reports" if (ROOT / "reports").is_dir() else Path("reports")  # checkout, else here
    run_dir = claim_run_dir(out or reports / f"{name}-{profile}", dataset.source_hash, force=force)
    with RunLock(run_dir):  # one writer at a time
        base = {**config, "data": str(source.resolve()), "run_dir": str(run_dir.resolve()), "profile": profile,
                "skip_bad": skip_bad, "resize": resize}
        status = {}

        def manifest(state: str) -> None:
            write_manifest(run_dir, kind="pipeline", parameters=base, data_source=source.resolve(),
                           data_hash=dataset.source_hash, synthetic=dataset.synthetic,
                           extra={"status": state, "notebooks": status,
                                  "figures": sorted(p.name for p in (run_dir / FIGURES_DIR).glob("*"))})

        manifest("running")
        paths = notebooks or notebook_paths()
        (run_dir / NOTEBOOKS_DIR).mkdir(exist_ok=True)
        for number, path in enumerate(paths, start=1):
            declared = pm.inspect_notebook(str(path))
            parameters = {key: value for key, value in base.items() if key in declared}
            output = run_dir / NOTEBOOKS_DIR / path.name
            print(f"[{number}/{len(paths)}] {path.name}", flush=True)
            start = time.perf_counter()
            try:
                pm.execute_notebook(str(path), str(output), parameters=parameters, cwd=str(path.parent),
                                    kernel_name="python3", progress_bar=True)
            except pm.PapermillExecutionError as error:
                status[path.name] = {"status": "failed", "cell": error.cell_index}
                manifest("failed")
                raise PipelineError(f"notebook {path.name} failed in cell {error.cell_index} "
                                    f"({error.ename}: {error.evalue}); executed copy: {output}") from None
            except Exception as error:  # the kernel died (out of memory, killed) or could not start
                status[path.name] = {"status": "failed"}
                manifest("failed")
                raise PipelineError(f"notebook {path.name} stopped ({type(error).__name__}: {error}); "
                                    f"executed copy: {output}") from None
            status[path.name] = {"status": "ok", "seconds": round(time.perf_counter() - start, 1)}
            print(f"      done in {status[path.name]['seconds']} s", flush=True)
        manifest("complete")
        write_report(run_dir)
    return run_dir
