import json

import pandas as pd
import pytest

from fer_utils import OptionError
from fer_utils.data import load_dataset
from fer_utils.prepare import prepare
from fer_utils.runs import SWEEP
from fer_utils.sweep import best_setting, chosen_for, lr_batch_sweep, run_configs, save_choice, sweep_config

NO_AUGMENTATION = dict(rotation=0, shift=0, shear=0, zoom=0, flip=False)


def test_sweep_config_keeps_the_recipe_and_drops_what_would_make_cells_differ():
    config = sweep_config("vgg_gap", {"vgg_gap": {"label_smoothing": 0.1, "early_stopping": 3, "time_budget": 5},
                                      "seed_cnn": {"epochs": 9}}, epochs=2, seed=4)
    assert (config.model, config.epochs, config.seed, config.label_smoothing) == ("vgg_gap", 2, 4, 0.1)
    assert config.early_stopping == 0 and config.time_budget == 0 and config.verbose == 0
    assert sweep_config("res_gap", {}, epochs=1).model == "res_gap"


def test_grid_choice_and_the_configs_it_hands_to_training(synthetic_zip, tmp_path):
    prepared = prepare(load_dataset(synthetic_zip)).train_sample(0.5)
    base = sweep_config("vgg_lean", {"vgg_lean": {"augmentation": NO_AUGMENTATION}}, epochs=1)
    grid = lr_batch_sweep(prepared, base, [1e-2, 1e-3], [64], tmp_path)
    assert grid[["learning_rate", "batch_size"]].values.tolist() == [[1e-2, 64], [1e-3, 64]]
    assert grid["val_accuracy"].between(0, 1).all() and (tmp_path / "sweep" / "lr0.001-bs64" / "model.keras").exists()
    trained = grid.copy()
    grid.loc[1, "val_accuracy"] = 2.0  # the second cell wins
    choice = best_setting(grid)
    assert choice == {"learning_rate": 1e-3, "batch_size": 64}
    save_choice(tmp_path, "vgg_lean", choice, grid)
    assert json.loads((tmp_path / SWEEP).read_text())["grid"][1]["val_accuracy"] == 2.0
    assert chosen_for(tmp_path, "vgg_lean") == choice and chosen_for(tmp_path, "seed_cnn") == {}
    configs = run_configs(tmp_path, {"vgg_lean": {"epochs": 3}, "seed_cnn": {"batch_size": 32}}, seed=7)
    assert (configs["vgg_lean"].learning_rate, configs["vgg_lean"].batch_size, configs["vgg_lean"].epochs) == (
        1e-3, 64, 3)
    assert configs["seed_cnn"].batch_size == 32 and configs["seed_cnn"].seed == 7
    assert run_configs(tmp_path, {"vgg_lean": {"batch_size": 16}})["vgg_lean"].batch_size == 16
    again = lr_batch_sweep(prepared, base, [], [], tmp_path / "study", trained="../sweep/lr*-bs64")
    pd.testing.assert_frame_equal(again, trained)  # read back in the grid's order (by value, not by folder name)
    (tmp_path / "sweep" / "lr0.01-bs64" / "train_state.json").write_text(json.dumps({"state": "running"}))
    (tmp_path / "sweep" / "lr0.001-bs64" / "train_state.json").unlink()  # as sweeps before the state file
    still = lr_batch_sweep(prepared, base, [], [], tmp_path / "study", trained="../sweep/lr*-bs64")
    assert still["learning_rate"].tolist() == [1e-3]  # a cell still training is left out
    with pytest.raises(OptionError, match="learning_rates, batch_sizes: empty sweep grid"):
        lr_batch_sweep(prepared, base, [1e-3], [], tmp_path)
    with pytest.raises(FileNotFoundError, match=r"/nothing-\*: no finished sweep run matches"):
        lr_batch_sweep(prepared, base, [], [], tmp_path, trained="nothing-*")


def test_best_setting_breaks_ties_by_the_faster_run():
    grid = pd.DataFrame({"learning_rate": [0.1, 0.01], "batch_size": [32, 64], "val_accuracy": [0.5, 0.5],
                         "seconds": [9.0, 3.0]})
    assert best_setting(grid) == {"learning_rate": 0.01, "batch_size": 64}
    with pytest.raises(ValueError, match="empty sweep grid: no finished cell to choose from"):
        best_setting(grid.iloc[:0])
