"""The lent-GPU script's packing: lossless, in parts that fit a call, checked when joined."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fer_utils.data import load_dataset

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "device_runs.py"


@pytest.fixture
def device_runs(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("device_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "PACK", tmp_path / "pack")
    return module


def test_training_images_travel_losslessly_in_parts_that_fit_a_call(device_runs, synthetic_zip, tmp_path,
                                                                     monkeypatch, capsys):
    payload = len(device_runs.encode_training(synthetic_zip))
    limit = device_runs.tree_bytes() + (1 << 16) + payload // 2 + 1  # room for about half the data per call
    monkeypatch.setattr(device_runs, "CALL_LIMIT", limit)
    manifest = device_runs.pack("configs/gpu-rehearsal.yaml", synthetic_zip, wheels=False)
    assert len(manifest["parts"]) in (2, 3) and all(call["bytes"] <= limit for call in manifest["calls"])
    assert manifest["calls"][-1]["carry"][-1] == ".device/calls.json"
    printed = capsys.readouterr().out
    assert f"call 1/{len(manifest['parts'])}: " in printed and "command: bash scripts/device_runs.sh" in printed
    folder = device_runs.unpack_training(tmp_path / "unpacked")
    source, copy = load_dataset(synthetic_zip), load_dataset(folder)
    train = source.usages == "Training"
    np.testing.assert_array_equal(copy.images, source.images[train])
    np.testing.assert_array_equal(copy.labels, source.labels[train])
    assert [Path(n).name for n in copy.names] == [Path(n).name for n in source.names[train]] and copy.synthetic
    part = device_runs.PACK / "training.xz.part00"
    part.write_bytes(part.read_bytes()[:-1] + b"x")
    with pytest.raises(SystemExit, match="not those packed: carry them again"):
        device_runs.unpack_training(tmp_path / "again")
    assert json.loads((device_runs.PACK / "calls.json").read_text())["payload_bytes"] == payload
