"""`fkp recipe`: a file of runs on the same folds, trained one after another where they are not finished, then
blended; a mistake anywhere in the file is refused before anything trains."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import LEARNED_SETTINGS, fkp

from competition.config import PROJECT_CONFIGS, load_config, load_recipe
from competition.errors import InputError
from competition.run import Run


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


@pytest.mark.slow
def test_a_recipe_trains_only_the_runs_it_lacks_then_blends_them(learned_run, run_data, tmp_path):
    runs_dir = tmp_path / "runs"
    shutil.copytree(learned_run / "runs" / "learned", runs_dir / "learned")
    models = {path: path.stat().st_mtime_ns for path in (runs_dir / "learned").glob("*/fold*/model.keras")}
    assert len(models) == 4  # both specialists, 2 folds (other tests may have exported the run beside them)
    quick = ["train.epochs=1", "inference.tta_shift=0", "train.validate_every=1"]
    recipe = tmp_path / "two-runs.toml"
    recipe.write_text(
        "folds = 2\n"
        f'[[runs]]\nname = "learned"\nconfig = "cpu-wide"\nset = {toml_list(LEARNED_SETTINGS)}\n'
        f'[[runs]]\nname = "quick"\nconfig = "cpu"\nset = {toml_list(quick)}\n'
    )
    out = tmp_path / "submissions" / "submission.csv"

    result = fkp(
        "recipe", recipe, "--data", run_data, "--runs-dir", runs_dir, "--folds-dir", learned_run / "folds",
        "--out", out,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    said = result.output
    assert f"recipe {recipe}, run 1 of 2: fkp cv --folds 2 --config cpu-wide --run learned --set " in said
    assert f"recipe {recipe}, run 2 of 2: fkp cv --folds 2 --config cpu --run quick --set train.epochs=1" in said
    assert result.output.count("already complete: skipped") == 4  # the learned run's, none of the new run's
    assert {path: path.stat().st_mtime_ns for path in models} == models
    assert Run(runs_dir / "quick").finished_folds("full") == [0, 1]
    assert "fkp blend --runs learned quick --blend-config nnls" in result.output
    assert result.output.strip().splitlines()[-1].startswith("blend_rmse=")
    submission = pd.read_csv(out)
    lookup = pd.read_csv(run_data / "IdLookupTable.csv")
    assert submission.RowId.tolist() == lookup.RowId.tolist()
    assert submission.Location.between(0, 96).all()


def write_recipe(folder: Path, text: str) -> Path:
    path = folder / "recipe.toml"
    path.write_text(text)
    return path


GOOD_RUN = '[[runs]]\nname = "a"\nconfig = "smoke"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("folds = 5\n", "needs at least one [[runs]] table"),
        ("folds = 1\n" + GOOD_RUN, "key 'folds'"),
        ("fold = 5\n" + GOOD_RUN, "unknown key 'fold'"),
        (GOOD_RUN + "sets = []\n", "unknown key 'runs[0].sets'"),
        ('[[runs]]\nname = "a"\n', "key 'runs[0].config' is missing"),
        ('[[runs]]\nname = "../a"\nconfig = "smoke"\n', "key 'runs[0].name' must be a run's folder name"),
        (GOOD_RUN + GOOD_RUN, "key 'runs[1].name': run 'a' is named twice"),
        (GOOD_RUN + '[[runs]]\nname = "b"\nconfig = "nosuch"\n', "run 'b': configs/nosuch.toml: config not found"),
        (GOOD_RUN + '[[runs]]\nname = "b"\nconfig = "smoke"\nset = ["model.dropout=2"]\n', "run 'b': --set"),
        ('blend = "nosuch"\n' + GOOD_RUN, "key 'blend': configs/blend/nosuch.toml: config not found"),
        (GOOD_RUN + "set = ", "not valid TOML"),
    ],
)
def test_a_bad_recipe_is_refused_in_one_line_before_anything_trains(tmp_path, sample_dir, text, message):
    recipe = write_recipe(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load_recipe(str(recipe))
    assert message in str(raised.value)

    result = fkp("recipe", recipe, "--data", sample_dir, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith(f"fkp: {recipe}")
    assert not (tmp_path / "runs").exists()


def test_the_projects_recipes_load_and_name_configs_that_exist():
    recipes = sorted((PROJECT_CONFIGS / "recipes").glob("*.toml"))
    assert recipes
    for path in recipes:
        recipe = load_recipe(str(path))
        assert len({run.name for run in recipe.runs}) == len(recipe.runs) >= 2
        for run in recipe.runs:
            assert load_config(run.config, run.set).name == run.config
