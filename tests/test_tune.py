"""`fkp tune`: search spaces, the HyperModel, tuned configs, kill-and-resume, chief + workers."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest
from conftest import free_local_address, write_claim

from competition.config import PROJECT_CONFIGS, Config, SpecialistConfig, load_config
from competition.errors import InputError
from competition.folds import make_folds
from competition.tune import (
    LOGGED_TUNERS,
    OBJECTIVE,
    SearchSpec,
    SpecialistHyperModel,
    check_chief_shares,
    distribution_env,
    load_search_space,
    project_dir,
    run_search,
    tuned_section,
    tuned_settings,
    write_tuned_config,
)

FKP = [sys.executable, "-m", "competition"]
# A space of tiny CNNs: trials of a few seconds on a CPU.
TINY_SPACE = """
[search.model]
blocks = { values = [2] }
base_filters = { values = [4, 8] }
convs_per_block = { values = [1] }
batch_norm = { values = [true, false] }
dense_units = { values = [16, 32] }

[search.augment]
strength = { min = 0.0, max = 1.0, step = 0.5 }

[search.train]
learning_rate = { min = 1e-3, max = 3e-3, sampling = "log" }
batch_size = { values = [16, 32] }
"""


@pytest.fixture
def tiny_space(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPACE)
    return path


def tune_args(data_dir, space, *extra):
    return ["tune", "--data", str(data_dir), "--space", str(space), "--config", "smoke", *map(str, extra)]


def run_fkp(*args, cwd):
    return subprocess.run([*FKP, *args], cwd=cwd, capture_output=True, text=True, env=os.environ.copy())


def trial_statuses(project: Path) -> dict[str, str]:
    statuses = {}
    for path in project.glob("trial_*/trial.json"):
        try:
            statuses[path.parent.name.removeprefix("trial_")] = json.loads(path.read_text())["status"]
        except json.JSONDecodeError:  # being written
            continue
    return statuses


# --- search spaces -------------------------------------------------------------------------------


def test_shipped_search_spaces_load():
    for path in (PROJECT_CONFIGS / "search").glob("*.toml"):
        space = load_search_space(str(path), SpecialistConfig())
        assert "train.learning_rate" in space.params and "model.blocks" in space.params
    assert (
        load_search_space("default", SpecialistConfig()).path.resolve() == PROJECT_CONFIGS / "search" / "default.toml"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("[search.model]\ndropuot = { min = 0.0, max = 0.5 }\n", "unknown hyperparameter 'model.dropuot'"),
        ("[search.model]\nfilters = { values = [8] }\n", "'model.filters' cannot be searched"),
        ("[search.optimizer]\nlr = { values = [1] }\n", "[search.optimizer] is not a table"),
        ("[search.model]\ndropout = { values = [0.1], min = 0.0 }\n", "either values = [...] or both min and max"),
        ("[search.model]\ndropout = { min = 0.0 }\n", "model.dropout needs either values = [...] or both min"),
        ("[search.model]\ndense_units = { values = ['wide'] }\n", "model.dense_units takes int values, got 'wide'"),
        ("[search.model]\nblocks = { min = 2.5, max = 4 }\n", "model.blocks takes int values, got 2.5"),
        ("[search.model]\nbatch_norm = { values = [true] }\n", "search it with values = [true, false]"),
        ("[search.model]\ndropout = { min = 0.0, max = 0.5, skew = 2 }\n", "must be a table of"),
        ("[search.train]\nlearning_rate = { min = 0.0, max = 0.1, sampling = 'log' }\n", "train.learning_rate: "),
        ("[model]\ndropout = 0.1\n", "expected only a [search] table"),
        ("[search]\n", "names no hyperparameter"),
        ("[search.model\n", "not valid TOML"),
        (
            "[search.model]\nfamily = { values = ['regression', 'heatmap'] }\ndense_units = { values = [64] }\n",
            "unknown hyperparameter 'model.dense_units' of the heatmap family",
        ),
        ("[search.model]\nfamily = { values = ['regression', 'unet'] }\n", "unknown family 'unet'"),
        ("[search.model]\nfamily = { min = 0, max = 1 }\n", "model.family must be a table with values"),
    ],
)
def test_bad_search_spaces_are_refused_with_the_key(tmp_path, text, message):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)) as error:
        load_search_space(str(path), SpecialistConfig())
    assert str(path) in str(error.value)


def test_unknown_search_space_name_lists_the_known_ones():
    with pytest.raises(InputError, match="known: .*default"):
        load_search_space("no-such-space", SpecialistConfig())


# --- from hyperparameters to settings ------------------------------------------------------------


def test_tuned_section_maps_derived_and_direct_keys_onto_the_base():
    base = SpecialistConfig()  # filters [32, 64, 128, 256], rotate 12, scale 0.08, flip 0.5
    section = tuned_section(
        base,
        {
            "model.blocks": 3,
            "model.base_filters": 16,
            "augment.strength": 0.5,
            "model.dropout": 0.1,
            "train.batch_size": 128,
        },
    )
    assert section["model"]["filters"] == [16, 32, 64]
    assert section["augment"]["rotate"] == 6.0 and section["augment"]["scale"] == 0.04
    assert section["augment"]["flip"] == 0.5  # strength leaves flips alone
    assert section["model"]["dropout"] == 0.1 and section["train"]["batch_size"] == 128
    assert section["train"]["learning_rate"] == base.train.learning_rate  # not searched: the base's
    only_depth = tuned_section(base, {"model.blocks": 5})
    assert only_depth["model"]["filters"] == [32, 64, 128, 256, 512]


def test_a_searched_family_starts_from_its_defaults_and_keeps_the_base_values_of_shared_keys():
    base = load_config("cpu").specialist("full")  # regression: one conv per block, 48x48, dense head 256
    section = tuned_section(base, {"model.family": "heatmap", "model.blocks": 3, "model.base_filters": 16})
    model = section["model"]
    assert model["family"] == "heatmap" and "dense_units" not in model
    assert model["filters"] == [16, 32, 64]
    assert model["convs_per_block"] == base.model.convs_per_block == 1  # the heatmap default is 2
    assert model["output_level"] == 0 and model["input_downsample"] == 2
    assert tuned_settings(base, {"model.family": "heatmap"}).model.family == "heatmap"
    back = tuned_section(tuned_settings(base, {"model.family": "heatmap"}), {"model.family": "regression"})
    assert back["model"]["dense_units"] == 512 and back["model"]["convs_per_block"] == 1
    assert tuned_section(base, {"model.family": "regression"})["model"]["dense_units"] == 256  # the base's


def test_the_cpu_space_searches_both_families_on_the_cpu_config():
    space = load_search_space("cpu", load_config("cpu").specialist("full"))
    assert space.families == ("regression", "heatmap")
    assert {
        "model.family",
        "model.blocks",
        "model.base_filters",
        "model.input_downsample",
        "model.dropout",
        "augment.strength",
        "train.learning_rate",
    } == set(space.params)


def test_the_hypermodel_builds_the_cv_model_with_the_trials_values(training, tiny_space):
    folds = make_folds(training, 3, 0)
    hypermodel = SpecialistHyperModel(
        "partial", load_config("smoke"), load_search_space(str(tiny_space), SpecialistConfig()), training, folds, 0
    )
    hp = kt.HyperParameters()
    hp.Fixed("model.base_filters", 8)
    hp.Fixed("model.batch_norm", False)
    hp.Fixed("model.dense_units", 32)
    hp.Fixed("train.learning_rate", 0.002)
    model = hypermodel.build(hp)
    convs = [layer for layer in model.layers if layer.name.endswith("_conv0")]
    assert [layer.filters for layer in convs] == [8, 16]  # blocks = 2, doubling from base_filters
    assert not any("bn" in layer.name for layer in model.layers)
    assert model.get_layer("head").units == 32
    assert np.isclose(float(model.optimizer.learning_rate.numpy()), 0.002)
    assert model.output_shape == (None, 8)


# --- the config it writes ------------------------------------------------------------------------


def test_tuned_config_keeps_the_other_specialists_table(tmp_path):
    path = tmp_path / "configs" / "tuned.toml"
    base = SpecialistConfig()
    write_tuned_config(path, "partial", tuned_section(base, {"model.dropout": 0.1}), Config(seed=7))
    write_tuned_config(path, "full", tuned_section(base, {"model.dense_units": 64}), Config(seed=9))
    config = load_config(str(path))
    full, partial = config.specialist("full"), config.specialist("partial")
    assert partial.model.dropout == 0.1 and partial.model.dense_units == base.model.dense_units
    assert full.model.dense_units == 64 and full.model.dropout == base.model.dropout
    assert config.seed == 7  # the file's seed stays
    write_tuned_config(path, "partial", tuned_section(base, {"model.dropout": 0.4}), Config(seed=7))
    again = load_config(str(path))
    assert again.specialist("partial").model.dropout == 0.4 and again.specialist("full").model.dense_units == 64


def test_a_new_tuned_config_trains_what_its_base_trained(tmp_path):
    """Tuned from the cpu profile (one network, partial off), `fkp cv --config tuned` must not train the
    partial specialist back in, nor lose the base's inference settings."""
    base = load_config("cpu", ["inference.tta=false"])
    path = tmp_path / "tuned.toml"
    write_tuned_config(path, "full", tuned_section(base.specialist("full"), {"model.dropout": 0.3}), base)
    config = load_config(str(path))
    assert config.trained == ["full"] and config.inference.tta is False
    assert config.specialist("full").model.dropout == 0.3
    assert config.specialist("full").model.input_downsample == base.specialist("full").model.input_downsample


@pytest.mark.slow
def test_a_trial_with_the_base_settings_trains_exactly_like_a_cv_fold(training, tmp_path):
    """The tuner builds its trials from `fkp cv`'s own fold stages: same model, batches and weights."""
    from competition.data import TestSet
    from competition.jobs import FoldJob
    from competition.train import train_fold

    config = load_config("smoke", ["train.epochs=2", "model.filters=[4, 8]", "model.dense_units=8"])
    folds = make_folds(training.head(80), 2, 0)
    space = tmp_path / "space.toml"
    space.write_text("[search.model]\ndropout = { values = [0.2] }\n")  # the smoke config's own value
    hypermodel = SpecialistHyperModel(
        "partial", config, load_search_space(str(space), SpecialistConfig()), training.head(80), folds, 1
    )
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    trial = hypermodel.fit(hp, model, epochs=2)
    test = TestSet(np.arange(1, 3), training.images[:2])
    result = train_fold(FoldJob(tmp_path / "run", "partial", 1, config, training.head(80), test, folds))
    assert result.epochs == len(trial.history["val_rmse"]) == 2
    assert np.isclose(result.best_val_rmse, min(trial.history["val_rmse"]), rtol=0, atol=1e-5)


def test_a_search_refuses_to_continue_with_other_settings(tmp_path):
    project = tmp_path / "tune" / "p" / "partial"
    spec = SearchSpec("partial", "abc", 5, 42, 0, 300, "bayesian", 2, {"model.dropout": {"min": 0, "max": 1}}, {})
    spec.claim(project, overwrite=False)
    (project / "trial_0").mkdir()
    spec.claim(project, overwrite=False)  # the same search: continues
    assert (project / "trial_0").exists()
    longer = SearchSpec(**{**spec.__dict__, "epochs": 5})
    with pytest.raises(InputError, match="other epochs"):
        longer.claim(project, overwrite=False)
    longer.claim(project, overwrite=True)
    assert not (project / "trial_0").exists()
    assert json.loads((project / "search.json").read_text())["epochs"] == 5


@pytest.mark.parametrize(
    "chief, worker, expected",
    [
        (None, None, {}),
        (
            "10.0.0.2:8000",
            None,
            {"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "10.0.0.2", "KERASTUNER_ORACLE_PORT": "8000"},
        ),
        (
            "head:8000",
            "3",
            {"KERASTUNER_TUNER_ID": "worker-3", "KERASTUNER_ORACLE_IP": "head", "KERASTUNER_ORACLE_PORT": "8000"},
        ),
    ],
)
def test_chief_and_worker_flags_set_keras_tuners_variables(chief, worker, expected):
    assert distribution_env(chief, worker) == expected


@pytest.mark.parametrize(
    "chief, worker, message",
    [
        (None, "1", "needs --chief"),
        ("head", None, "HOST:PORT"),
        ("head:99999", None, "HOST:PORT"),
        ("head:8000", "chief2", "not contain 'chief'"),
    ],
)
def test_bad_distribution_flags_are_refused(chief, worker, message):
    with pytest.raises(InputError, match=message):
        distribution_env(chief, worker)


def test_a_search_on_a_project_another_live_search_holds_is_refused_naming_it(tmp_path, training, tiny_space, live_pid):
    directory = project_dir(tmp_path / "runs", "p", "partial")
    write_claim(directory.with_name("partial.claim.0"), live_pid)
    config = load_config("smoke")
    with pytest.raises(
        InputError,
        match=rf"being searched by {socket.gethostname()}:{live_pid} since .*: wait "
        r"for it to end or pick another --project",
    ):
        run_search(
            "partial",
            config,
            load_search_space(str(tiny_space), config.specialist("partial")),
            training.head(60),
            make_folds(training.head(60), 2, 42),
            fold=0,
            tuner="random",
            max_trials=1,
            epochs=1,
            directory=directory,
        )
    assert not directory.exists()  # nothing of the search was touched


def test_the_chiefs_oracle_holds_the_data_and_folds_a_worker_checks(tmp_path, training, tiny_space):
    """The hypermodel declares its data and fold split as fixed hyperparameters, so the chief's oracle
    space holds them; a worker on other faces or another fold is refused, naming what differs."""
    config = load_config("smoke")
    space = load_search_space(str(tiny_space), config.specialist("partial"))
    folds = make_folds(training.head(60), 2, 42)
    chief = SpecialistHyperModel("partial", config, space, training.head(60), folds, 0)
    searcher = LOGGED_TUNERS["random"](
        chief, objective=kt.Objective(OBJECTIVE, "min"), max_trials=1, directory=str(tmp_path), project_name="p"
    )
    chief_space = searcher.oracle.get_space()
    check_chief_shares(chief_space, chief.identity)  # the same search
    other = SpecialistHyperModel("partial", config, space, training.head(50), folds.head(50), 1)
    with pytest.raises(
        InputError,
        match=r"faces 60 \(this worker: 50\); fold 0 \(this worker: 1\): give every "
        "worker the chief's --data, --folds, --fold and --limit",
    ):
        check_chief_shares(chief_space, other.identity)


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned_work(tmp_path_factory, run_data):
    """`fkp tune` for both specialists into one config, then `fkp cv --config tuned`."""
    work = tmp_path_factory.mktemp("tune")
    (work / "tiny.toml").write_text(TINY_SPACE)
    outputs = {}
    for name in ("partial", "full"):
        result = run_fkp(
            *tune_args(
                run_data,
                work / "tiny.toml",
                "--specialist",
                name,
                "--limit",
                100,
                "--folds",
                2,
                "--epochs",
                1,
                "--max-trials",
                2,
                "--project",
                "t",
            ),
            cwd=work,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        outputs[name] = result.stdout
    cv = run_fkp(
        "cv", "--data", str(run_data), "--config", "tuned", "--folds", "2", "--epochs", "1", "--limit", "100", cwd=work
    )
    assert cv.returncode == 0, cv.stdout + cv.stderr
    return work, outputs, cv.stdout


@pytest.mark.slow
def test_tune_ends_with_the_best_trials_table(tuned_work):
    work, outputs, _ = tuned_work
    out = outputs["partial"]
    assert "Best trials of runs/tune/t/partial" in out
    best = float(out.strip().splitlines()[-1].removeprefix("best_val_rmse="))
    scores = [json.loads(p.read_text())["score"] for p in (work / "runs/tune/t/partial").glob("trial_*/trial.json")]
    assert len(scores) == 2 and np.isclose(best, min(scores), atol=1e-5)
    assert not list((work / "runs/tune/t").glob("*.claim.*"))  # the search released its project


@pytest.mark.slow
def test_tuned_config_holds_each_specialists_best_trial_and_cv_uses_it(tuned_work):
    work, _, _ = tuned_work
    tuned = load_config(str(work / "configs" / "tuned.toml"))
    for name in ("partial", "full"):
        trials = [json.loads(p.read_text()) for p in (work / "runs/tune/t" / name).glob("trial_*/trial.json")]
        best = min(trials, key=lambda trial: trial["score"])["hyperparameters"]["values"]
        settings = tuned.specialist(name)
        assert settings.model.filters == [best["model.base_filters"], 2 * best["model.base_filters"]]
        assert settings.model.dense_units == best["model.dense_units"]
        assert settings.train.learning_rate == best["train.learning_rate"]
        assert settings.train.batch_size == best["train.batch_size"]
    run_config = load_config(str(work / "runs" / "tuned" / "config.toml"))  # what `fkp cv` trained with
    for name in ("partial", "full"):
        ran, wanted = run_config.specialist(name), tuned.specialist(name)
        assert ran.model == wanted.model and ran.augment == wanted.augment
        assert ran.train.learning_rate == wanted.train.learning_rate and ran.train.batch_size == wanted.train.batch_size
        assert ran.train.epochs == 1  # --epochs 1


@pytest.mark.slow
def test_a_search_over_families_trains_a_heatmap_trial_within_its_wall_clock_budget(tmp_path, data_dir):
    """The family is a hyperparameter: a regression base config's trial builds a heatmap network, and
    `train.max_minutes` is each trial's budget (this one is spent by the first of 3 epochs)."""
    space = tmp_path / "families.toml"
    space.write_text(
        "[search.model]\nfamily = { values = ['heatmap'] }\nblocks = { values = [2] }\n"
        "base_filters = { values = [4] }\n"
    )
    result = run_fkp(
        "tune",
        "--data",
        str(data_dir),
        "--space",
        str(space),
        "--config",
        "cpu",
        "--specialist",
        "full",
        "--limit",
        "60",
        "--folds",
        "2",
        "--epochs",
        "3",
        "--max-trials",
        "1",
        "--set",
        "train.max_minutes=1e-9",
        "--project",
        "families",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\[full trial 0 on tuner0\] best val_rmse [\d.]+ after 1 epochs", result.stdout)
    tuned = load_config(str(tmp_path / "configs" / "tuned.toml")).specialist("full")
    assert tuned.model.family == "heatmap" and tuned.model.filters == [4, 8]
    assert tuned.train.max_minutes == 1e-9 and tuned.model.convs_per_block == 1  # the cpu config's


def test_a_search_killed_while_saving_its_state_keeps_the_previous_state_whole(tmp_path, monkeypatch):
    """Keras Tuner writes oracle.json in place; a kill during that write once left it empty."""
    import competition.tune  # noqa: F401  (installs the atomic writer)

    oracle = kt.oracles.RandomSearchOracle(max_trials=3, seed=1)
    oracle._set_project_dir(str(tmp_path), "project")
    oracle.save()
    saved = (tmp_path / "project" / "oracle.json").read_text()
    assert json.loads(saved)["seed_state"] == 1

    def killed(*args):
        raise KeyboardInterrupt

    oracle.seed_state = 2
    monkeypatch.setattr("competition.io.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        oracle.save()
    assert (tmp_path / "project" / "oracle.json").read_text() == saved
    assert [p.name for p in (tmp_path / "project").iterdir()] == ["oracle.json"]  # no temporary left


@pytest.mark.slow
def test_a_killed_search_resumes_without_redoing_finished_trials(tmp_path, data_dir, tiny_space):
    args = [
        *FKP,
        *tune_args(
            data_dir,
            tiny_space,
            "--specialist",
            "partial",
            "--limit",
            60,
            "--epochs",
            2,
            "--max-trials",
            3,
            "--project",
            "killed",
        ),
    ]
    project = tmp_path / "runs" / "tune" / "killed" / "partial"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        deadline = time.monotonic() + 300
        # The second trial's folder appears once the first trial has ended: kill the search inside trial 1.
        while "1" not in trial_statuses(project) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()
    at_kill = trial_statuses(project)
    finished = {trial for trial, status in at_kill.items() if status == "COMPLETED"}
    assert "0" in finished and len(finished) < 3
    first_trial = (project / "trial_0" / "trial.json").read_bytes()
    first_weights = (project / "trial_0" / "checkpoint.weights.h5").stat().st_mtime_ns

    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=os.environ.copy())
    assert second.returncode == 0, second.stdout + second.stderr
    assert "continuing the search" in second.stdout
    ran = set(re.findall(r"\[partial trial (\d+) on tuner0\] best val_rmse", second.stdout))
    assert ran == {"0", "1", "2"} - finished
    assert trial_statuses(project) == {"0": "COMPLETED", "1": "COMPLETED", "2": "COMPLETED"}
    assert (project / "trial_0" / "trial.json").read_bytes() == first_trial
    assert (project / "trial_0" / "checkpoint.weights.h5").stat().st_mtime_ns == first_weights
    assert second.stdout.strip().splitlines()[-1].startswith("best_val_rmse=")


@pytest.mark.slow
def test_a_chief_and_two_workers_share_one_search(tmp_path, data_dir, tiny_space):
    args = tune_args(
        data_dir,
        tiny_space,
        "--specialist",
        "partial",
        "--limit",
        60,
        "--epochs",
        1,
        "--max-trials",
        4,
        "--project",
        "shared",
        "--chief",
        free_local_address(),
    )
    roles = {"chief": [], "w1": ["--worker", "1"], "w2": ["--worker", "2"]}
    processes, logs, outputs = {}, {}, []
    try:
        for role, extra in roles.items():  # one folder per process, as on separate machines
            (tmp_path / role).mkdir()
            logs[role] = tmp_path / role / "out.log"
            outputs.append(open(logs[role], "w"))
            processes[role] = subprocess.Popen(
                [*FKP, *args, *extra],
                cwd=tmp_path / role,
                env=os.environ.copy(),
                stdout=outputs[-1],
                stderr=subprocess.STDOUT,
            )
            if role == "chief":  # workers start once the chief serves its oracle
                deadline = time.monotonic() + 120
                while "serving the oracle" not in logs[role].read_text() and time.monotonic() < deadline:
                    assert processes[role].poll() is None, logs[role].read_text()
                    time.sleep(0.2)
        for role, process in processes.items():
            assert process.wait(timeout=400) == 0, logs[role].read_text()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        for output in outputs:
            output.close()

    chief_trials = trial_statuses(tmp_path / "chief" / "runs" / "tune" / "shared" / "partial")
    assert chief_trials == {trial: "COMPLETED" for trial in "0123"}
    ran = {
        worker: {
            p.parent.name.removeprefix("trial_")
            for p in (tmp_path / worker / "runs" / "tune" / "shared" / "partial").glob("trial_*/checkpoint*")
        }
        for worker in ("w1", "w2")
    }
    assert ran["w1"] and ran["w2"] and not ran["w1"] & ran["w2"]
    assert ran["w1"] | ran["w2"] == set(chief_trials)
    assert "Best trials of" in logs["chief"].read_text() and (tmp_path / "chief" / "configs" / "tuned.toml").exists()
    assert not (tmp_path / "w1" / "configs").exists()
    assert "writes the config" in logs["w1"].read_text()


@pytest.mark.slow
def test_a_worker_on_other_data_than_the_chiefs_is_refused_before_any_trial(tmp_path, data_dir, tiny_space):
    args = tune_args(
        data_dir,
        tiny_space,
        "--specialist",
        "partial",
        "--epochs",
        1,
        "--max-trials",
        2,
        "--project",
        "shared",
        "--chief",
        free_local_address(),
    )
    (tmp_path / "chief").mkdir()
    with open(tmp_path / "chief" / "out.log", "w") as out:
        chief = subprocess.Popen(
            [*FKP, *args, "--limit", "60"],
            cwd=tmp_path / "chief",
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    try:
        (tmp_path / "worker").mkdir()
        worker = subprocess.run(
            [*FKP, *args, "--limit", "80", "--worker", "1"],
            cwd=tmp_path / "worker",
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=300,
        )
    finally:
        chief.kill()
        chief.wait()
    assert worker.returncode == 2, worker.stdout + worker.stderr
    assert worker.stderr.strip() == (
        "fkp: --chief: the chief searches other data or folds: faces 60 (this worker: "
        "80): give every worker the chief's --data, --folds, --fold and --limit"
    )
    assert not list((tmp_path / "worker").rglob("trial_*"))
