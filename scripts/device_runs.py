"""Train a plan on the lent accelerator machine (``device`` tool) and bring the models back.

Three steps, two places:

``pack`` (here)
    Writes ``.device/``: FER2013's Training images, losslessly (raw pixels, delta + LZMA,
    about 47 MB), split into parts that fit the 64 MiB a call may carry beside the tracked
    tree; the ``keras`` wheel and the two packages it needs that the machine lacks; and
    ``calls.json``, the device calls to make, printed with the payload size of each.
``device`` (there, by ``scripts/device_runs.sh``)
    Joins and checks the parts, writes the images as a Kaggle-layout folder (same names,
    so the same train/validation split as here), trains every run of the plan at once
    on the JAX backend (``fer_utils.long_runs.run_parallel``), and writes into ``$OUT``
    one ``<run>.keras`` per model (exported in bfloat16: under the 16 MiB a returned file
    may have) and ``runs.tar.gz`` (histories, configs, states, logs).
``unpack`` (here)
    Puts each returned model at ``<run>/model.keras``, beside its history.

    python scripts/device_runs.py pack --plan configs/gpu-runs.yaml
    python scripts/device_runs.py unpack FILES_AT --out reports/gpu-runs
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: What travels (``FER_DEVICE_PACK`` moves it, for rehearsals); where the machine works.
PACK = Path(os.environ.get("FER_DEVICE_PACK", ROOT / ".device"))
WORK = Path(os.environ.get("FER_DEVICE_WORK", "/tmp/fer-device"))
MIB = 1 << 20
CALL_LIMIT = 64 * MIB
#: Calls one plan may take: the machine stays warm only 30 s between them.
MAX_CALLS = 3
#: Packages the machine lacks (its image has numpy, pandas, scikit-learn, jax, h5py, rich...).
WHEELS = ("keras==3.15.1", "namex==0.1.0", "optree==0.19.0")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
DELTA_LZMA = [{"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_LZMA2, "preset": 6}]


def tree_bytes() -> int:
    """Bytes of what travels on every call: tracked files and untracked ones git does not ignore."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    return sum((ROOT / f).stat().st_size for f in files.decode().split("\0") if f and (ROOT / f).is_file())


def encode_training(data) -> bytes:
    """The Training images, labels and file names of ``data``, losslessly compressed."""
    from fer_utils.data import load_dataset  # noqa: PLC0415

    dataset = load_dataset(data)
    train = dataset.usages == "Training"
    buffer = io.BytesIO()
    np.savez(buffer, images=dataset.images[train], labels=dataset.labels[train], names=dataset.names[train],
             source_sha256=np.array(dataset.source_hash), synthetic=np.array(dataset.synthetic))
    return lzma.compress(buffer.getvalue(), format=lzma.FORMAT_XZ, filters=DELTA_LZMA)


def pack(plan: str, data: str, wheels: bool = True) -> dict:
    """Write ``.device/`` and ``calls.json``; refuse when a call could not fit."""
    PACK.mkdir(parents=True, exist_ok=True)
    for old in PACK.glob("training.xz.part*"):
        old.unlink()
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp",
                        *[f"--platform={p}" for p in PLATFORMS], "-d", str(PACK / "wheels"), *WHEELS], check=True)
    wheel_bytes = sum(f.stat().st_size for f in (PACK / "wheels").glob("*.whl")) if wheels else 0
    payload = encode_training(data)
    tree = tree_bytes()
    room = CALL_LIMIT - tree - wheel_bytes - (1 << 16)  # 64 KiB for calls.json and file-system slack
    if room <= 0 or -(-len(payload) // room) > MAX_CALLS:
        raise SystemExit(f"the working tree leaves {max(room, 0) / MIB:.1f} MiB per call: the data "
                         f"({len(payload) / MIB:.1f} MiB) would need more than {MAX_CALLS} calls")
    parts = [payload[i:i + room] for i in range(0, len(payload), room)]
    for number, part in enumerate(parts):
        (PACK / f"training.xz.part{number:02d}").write_bytes(part)
    last = [".device/calls.json"] + ([".device/wheels"] if wheels else [])
    calls = [{"carry": [f".device/training.xz.part{n:02d}"] + (last if n == len(parts) - 1 else []),
              "bytes": tree + len(part) + (wheel_bytes if n == len(parts) - 1 else 0)}
             for n, part in enumerate(parts)]
    manifest = {"plan": plan, "parts": [hashlib.sha256(p).hexdigest() for p in parts],
                "payload_bytes": len(payload), "wheel_bytes": wheel_bytes, "calls": calls}
    (PACK / "calls.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for number, call in enumerate(calls, start=1):
        last = number == len(calls)
        command = "bash scripts/device_runs.sh" if last else "true (parts stay on the warm machine)"
        print(f"call {number}/{len(calls)}: {call['bytes'] / MIB:.1f} MiB of at most 64 MiB; "
              f"carry {call['carry']}; command: {command}")
    return manifest


def unpack_training(folder: Path) -> Path:
    """Join and check the parts, write the images as ``folder/train/<class>/<name>``."""
    from PIL import Image  # noqa: PLC0415

    from fer_utils import CLASSES  # noqa: PLC0415
    from fer_utils.data import SYNTHETIC_MARKER  # noqa: PLC0415

    manifest = json.loads((PACK / "calls.json").read_text())
    parts = [(PACK / f"training.xz.part{n:02d}").read_bytes() for n in range(len(manifest["parts"]))]
    if [hashlib.sha256(p).hexdigest() for p in parts] != manifest["parts"]:
        raise SystemExit("the data parts on this machine are not those packed: carry them again")
    with np.load(io.BytesIO(lzma.decompress(b"".join(parts)))) as data:
        for image, label, name in zip(data["images"], data["labels"], data["names"]):
            path = folder / "train" / CLASSES[label] / Path(str(name)).name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
        if bool(data["synthetic"]):
            (folder / SYNTHETIC_MARKER).write_text("synthetic\n")
    return folder


def export_model(model_path: Path, target: Path) -> None:
    """A run's model as ``fer_utils.models.export_for_inference`` makes it in bfloat16: half
    the size, under the 16 MiB a returned file may have."""
    import keras

    from fer_utils.models import export_for_inference

    export_for_inference(keras.models.load_model(model_path), "bfloat16").save(target)


def device(plan: str, out: Path, jobs: int) -> int:
    """On the lent machine: unpack, train the plan, write what comes back into ``out``."""
    import yaml

    from fer_utils.long_runs import run_parallel

    work = WORK
    shutil.rmtree(work, ignore_errors=True)  # a second try on a warm machine starts clean
    data = unpack_training(work / "fer2013-training")
    local_plan = work / "plan.yaml"

    spec = yaml.safe_load((ROOT / plan).read_text())
    local_plan.write_text(yaml.safe_dump({**spec, "data": str(data)}))
    codes = run_parallel(local_plan, work / "runs", jobs=jobs, log=lambda line: print(line, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        for run in (work / "runs").iterdir():
            for name in ("history.csv", "train_config.json", "train_state.json", "manifest.json"):
                if (run / name).exists():
                    tar.add(run / name, arcname=f"{run.name}/{name}")
            if run.suffix == ".log":
                tar.add(run, arcname=run.name)
    for run in (work / "runs").iterdir():
        if (run / "model.keras").exists():
            export_model(run / "model.keras", out / f"{run.name}.keras")
    return 1 if any(codes.values()) else 0


def unpack(files_at: Path, out: Path) -> None:
    """Here: each returned ``<run>.keras`` becomes ``out/<run>/model.keras`` beside its history."""
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(files_at / "runs.tar.gz") as tar:
        tar.extractall(out, filter="data")
    for exported in sorted(files_at.glob("*.keras")):
        shutil.copyfile(exported, out / exported.stem / "model.keras")
        print(f"{exported.stem}: {out / exported.stem / 'model.keras'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    sub = steps.add_parser("pack", help="here: write .device/ and the calls to make")
    sub.add_argument("--plan", default="configs/gpu-runs.yaml")
    sub.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fer2013.zip"))
    sub.add_argument("--no-wheels", action="store_true", help="rehearsal here: keras is installed already")
    sub = steps.add_parser("device", help="there: unpack, train the plan, write into --out")
    sub.add_argument("--plan", default="configs/gpu-runs.yaml")
    sub.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")))
    sub.add_argument("--jobs", type=int, default=4)
    sub = steps.add_parser("unpack", help="here: rebuild the returned models")
    sub.add_argument("files_at", type=Path)
    sub.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "pack":
        pack(args.plan, args.data, wheels=not args.no_wheels)
    elif args.step == "device":
        return device(args.plan, args.out, args.jobs)
    else:
        unpack(args.files_at, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
