"""The `fkp` command line: wires data -> folds -> cv -> blend; each step lives in its own module."""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from . import data as data_module
from .config import TrainConfig, check_option, load_config
from .errors import InputError
from .folds import folds_for, folds_path, load_folds, make_folds, save_folds
from .machine import gpu_for_backend, keep_freed_memory, quiet_backend_env, stderr_silenced
from .schema import IMAGE_SIZE

# click's base of every usage error; newer typer vendors click, so reach it through typer's own export
ClickException = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


class OneLineUsageErrors(typer.core.TyperGroup):
    """A usage error (an option's value of the wrong type, an unknown option) is one line and exit
    status 2, like bad input, instead of click's usage box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            status = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as error:
            print(f"fkp: {error.format_message()}", file=sys.stderr)
            sys.exit(2)
        sys.exit(status if isinstance(status, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
    help="Kaggle Facial Keypoints Detection: folds, specialist CNNs, tuning, blending, submission.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(soft_wrap=True)
log = functools.partial(console.print, markup=False)  # progress lines start with "[name ...]", not markup


_GLOBAL = {"verbose": False}  # `fkp --verbose COMMAND`


@app.callback()
def _before_every_command(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Every command: show the backend's own start-up and log lines (TensorFlow's C++ logging)."
        ),
    ] = False,
) -> None:
    keep_freed_memory()  # in this process; `fkp cv`'s fold processes call it themselves
    _GLOBAL["verbose"] = verbose
    quiet_backend_env(verbose)  # before any command imports the backend: its C++ log level is read at import


def _verbose(flag: bool = False) -> bool:
    """Whether the backend's own lines are shown: a command's --verbose or the global one."""
    return flag or _GLOBAL["verbose"]


def _load_backend(verbose: bool = False) -> None:
    """Import Keras (and its backend) with the backend's C++ start-up lines kept out of the terminal unless
    --verbose: they are written to file descriptor 2 before any log level applies."""
    quiet_backend_env(_verbose(verbose))
    with stderr_silenced(not _verbose(verbose)):
        import keras  # noqa: F401


DataOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data",
        help="Folder with training/test (zip or csv) and IdLookupTable.csv "
        "[default: ./data if it has them, else the bundled sample]",
    ),
]
FoldsDirOption = Annotated[Path, typer.Option("--folds-dir", help="Where fold assignments are stored.")]
RunsDirOption = Annotated[Path, typer.Option("--runs-dir", help="Where runs are written.")]
RunOption = Annotated[
    Optional[str],
    typer.Option(help="The run [default: the run `fkp cv` writes on this machine: cpu, or default with a GPU]."),
]
SubmissionOption = Annotated[
    Path, typer.Option("--out", help="Submission file; weights, faces PNG and report are written beside it.")
]
TTAOption = Annotated[
    Optional[bool], typer.Option("--tta/--no-tta", help="Use TTA predictions (default: the run's inference.tta).")
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", help="Show the backend's own start-up and log lines (TensorFlow's C++ logging).")
]
ClusterOption = Annotated[
    Optional[str],
    typer.Option(
        help="Run on Ray: local (start Ray on this machine), auto (the cluster this machine joined with `ray start`) "
        "or the head's HOST:PORT. Needs the cluster extra: pip install -e '.[cluster]'."
    ),
]
RetriesOption = Annotated[int, typer.Option(help="With --cluster: how many times a task whose worker died runs again.")]


_INTERRUPTED = {"kept": "nothing was written"}  # what a command has kept so far, and how to go on


def on_interrupt(kept: str) -> None:
    """What the command keeps if Ctrl-C stops it from here on, and how to resume: its one line then."""
    _INTERRUPTED["kept"] = kept


def one_line_errors(command):
    """Bad input ends the command with its one-line message and exit status 2, no traceback; Ctrl-C ends it with
    one line saying what was kept and how to resume, and exit status 130 (a temporary file being written is
    removed as the interruption unwinds, and claims are released)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        on_interrupt("nothing was written: run the same command again")
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            console.file.flush()
            print(f"fkp: interrupted: {_INTERRUPTED['kept']}", file=sys.stderr)
            raise typer.Exit(130) from None
        except InputError as error:
            print(f"fkp: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        except OSError as error:
            if error.filename is None:
                raise
            # a path the user named that cannot be read or written: a file where a folder must be, ...
            print(f"fkp: {error.filename}: {error.strerror}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _data(data: Path | None) -> tuple[Path, bool]:
    folder, is_sample = data_module.resolve_data_dir(data)
    if is_sample:
        console.print(f"No --data given and no competition files in ./data: using the bundled sample ({folder}).")
    return folder, is_sample


def _machine_config_name() -> tuple[str, str]:
    """The config a command uses without --config, and why: default where the backend sees a GPU, cpu where it
    does not."""
    gpu, reason = gpu_for_backend()
    return ("default" if gpu else "cpu"), reason


def _machine_config() -> str:
    """``_machine_config_name``, said in one line."""
    name, reason = _machine_config_name()
    console.print(f"config {name}: {reason} (pass --config to choose)")
    return name


def _run_name(run: str | None) -> str:
    """The run a command reads: ``--run``, or the one `fkp cv` writes without --run and --config on this machine
    (named after the machine's config), whatever the data; one line says which."""
    if run:
        return run
    name, reason = _machine_config_name()
    console.print(f"run {name}: the run `fkp cv` writes on this machine ({reason}; pass --run to choose)")
    return name


def _cluster_options(address: str | None, cpus: float, gpus: float | None, retries: int, task: str):
    """``--cluster`` and what each of its tasks (``task``: fold, worker) asks for; None without ``--cluster``."""
    for option, value in ((f"--cpus-per-{task}", cpus), (f"--gpus-per-{task}", gpus), ("--retries", retries)):
        if value is not None and value < 0:
            raise InputError(option, f"must be at least 0, got {value:g}")
    if address is None:
        return None
    from .cluster import ClusterOptions, require_ray

    require_ray()  # before anything is written
    return ClusterOptions(address, cpus, gpus, retries)


def _dataset_name(folder: Path, is_sample: bool) -> str:
    return "sample" if is_sample else folder.resolve().name


@app.command()
@one_line_errors
def check(data: DataOption = None):
    """Validate a data folder and summarise it."""
    folder, _ = _data(data)
    started = time.perf_counter()
    training = data_module.load_training(folder)
    test = data_module.load_test(folder)
    lookup = data_module.load_lookup(folder, test)
    styles = ", ".join(f"{count} {style}-style" for style, count in zip(*np.unique(training.style, return_counts=True)))
    test_styles = ", ".join(
        f"{count} {style}-style"
        for style, count in data_module.lookup_styles(lookup).value_counts().sort_index().items()
    )
    console.print(
        f"{folder}: {len(training)} training faces ({styles}), {len(test)} test faces ({test_styles}), "
        f"{len(lookup)} lookup rows; loaded in {time.perf_counter() - started:.2f}s"
    )
    if training.corrections:
        console.print(
            f"{data_module.corrections_path(folder)}: {training.corrections} corrections applied to the training "
            f"labels (fingerprint {training.fingerprint}; Kaggle's files as they are: {training.source_fingerprint})"
        )
    repeated = data_module.repeated_rows(training)
    if repeated:
        console.print(
            f"{repeated} training rows repeat an earlier row (same pixels and keypoints): legal; "
            "the folds keep each repeat on one side of a split"
        )


@app.command()
@one_line_errors
def folds(
    data: DataOption = None,
    k: Annotated[int, typer.Option("--folds", help="Number of folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Shuffle seed.")] = 42,
    folds_dir: FoldsDirOption = Path("folds"),
    overwrite: Annotated[bool, typer.Option(help="Replace stored folds.")] = False,
    estimate_mirror_axis: Annotated[
        bool,
        typer.Option(
            "--estimate-mirror-axis",
            help="Estimate the labels' mirror axis on this data (a short no-flip training "
            "of --config's full network on fold 0) and store it with the folds; flips then mirror about it.",
        ),
    ] = False,
    config_name: Annotated[
        str, typer.Option("--config", help="Config whose full network estimates the mirror axis.")
    ] = "cpu-wide",
):
    """Build the K-fold split (stratified by annotation style) and store it; estimate the mirror axis."""
    folder, is_sample = _data(data)
    training = data_module.load_training(folder)
    path = folds_path(folds_dir, _dataset_name(folder, is_sample), k)
    if path.exists() and not (overwrite or estimate_mirror_axis):
        raise InputError(path, "folds already stored: pass --overwrite to replace them")
    if path.exists() and not overwrite:
        split = load_folds(path, training)
        if split.k != k:
            raise InputError(path, f"holds {split.k} folds, not {k}: pass --overwrite to rebuild them")
    else:
        split = make_folds(training, k, seed)
    if estimate_mirror_axis:
        from .cv import in_fresh_process
        from .mirror import estimate_mirror_axis as estimate

        started = time.perf_counter()
        axis = in_fresh_process(estimate, training, split, load_config(config_name))
        split = dataclasses.replace(split, mirror_axis=round(axis, 3))
        console.print(
            f"mirror axis estimated on {folder}: x -> {split.mirror_axis} - x ({time.perf_counter() - started:.0f}s)"
        )
    save_folds(split, path)
    console.print(
        f"{path}: {split.k} folds of {len(training)} faces, seed {split.seed}"
        + (f", mirror axis {split.mirror_axis}" if split.mirror_axis is not None else "")
    )


def _training_and_folds(folder: Path, is_sample: bool, folds_dir: Path, k: int, seed: int, limit: int | None):
    """The training set and its stored K-fold split (built on first use), cut to the first ``limit`` faces."""
    training = data_module.load_training(folder)
    path = folds_path(folds_dir, _dataset_name(folder, is_sample), k)
    split, built = folds_for(training, path, k, seed)
    if built:
        console.print(f"{path}: built {split.k} folds (seed {split.seed})")
    return training.head(limit), split.head(limit)


def _print_table(table, title: str, index_label: str = "keypoint") -> None:
    shown = Table(title=title)
    shown.add_column(index_label, no_wrap=True, min_width=max(len(str(label)) for label in table.index))
    for column in table.columns:
        shown.add_column(column, justify="right")
    for keypoint, *values in table.itertuples():
        shown.add_row(str(keypoint), *(f"{v:.4f}" if isinstance(v, float) else str(v) for v in values))
    console.print(shown)


@app.command()
@one_line_errors
def cv(
    data: DataOption = None,
    k: Annotated[int, typer.Option("--folds", help="Number of folds (stored once per K in --folds-dir).")] = 5,
    config_name: Annotated[
        Optional[str],
        typer.Option(
            "--config", help="Config name in configs/ or a TOML path [default: default with a GPU, cpu without]."
        ),
    ] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override train.epochs.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N training faces (smoke runs).")] = None,
    fold: Annotated[Optional[int], typer.Option(help="Train only this fold (0-based).")] = None,
    run: Annotated[Optional[str], typer.Option(help="Run name [default: the config's name].")] = None,
    runs_dir: RunsDirOption = Path("runs"),
    folds_dir: FoldsDirOption = Path("folds"),
    seed: Annotated[int, typer.Option(help="Fold seed when folds are built.")] = 42,
    overrides: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            help="Override a config key, e.g. --set model.dropout=0.2 or --set specialists.full.model.dropout=0.2 "
            "(repeatable).",
        ),
    ] = None,
    tta: TTAOption = None,
    verbose: VerboseOption = False,
    cluster: ClusterOption = None,
    cpus_per_fold: Annotated[float, typer.Option(help="With --cluster: CPUs each fold job asks for.")] = 1,
    gpus_per_fold: Annotated[
        Optional[float],
        typer.Option(
            help="With --cluster: GPUs each fold job asks for [default: 1 where the cluster has GPUs, else 0]."
        ),
    ] = None,
    retries: RetriesOption = 2,
):
    """Train the config's specialists on every fold and print the cross-validated RMSE."""
    if k < 2:
        raise InputError("--folds", f"need at least 2 folds, got {k}")
    if limit is not None and limit < 2:
        raise InputError("--limit", f"need at least 2 faces, got {limit}")
    if epochs is not None:
        check_option(epochs, TrainConfig, "train.epochs", "--epochs")
    verbose = _verbose(verbose)
    quiet_backend_env(verbose)
    folder, is_sample = _data(data)
    settings = list(overrides or []) + ([f"train.epochs={epochs}"] if epochs is not None else [])
    config = load_config(config_name or _machine_config(), settings)
    run_dir = runs_dir / (run or config.name)
    if fold is not None and not 0 <= fold < k:
        raise InputError("--fold", f"fold {fold} does not exist with --folds {k}: folds are 0..{k - 1}")
    on_cluster = _cluster_options(cluster, cpus_per_fold, gpus_per_fold, retries, "fold")

    training, split = _training_and_folds(folder, is_sample, folds_dir, k, seed, limit)
    test = data_module.load_test(folder)

    from .cluster import RayFolds
    from .cv import LocalFolds, run_cv  # Keras loads in the fold process, never in this one
    from .evaluate import ALL_FACES, fit_run_head, out_of_fold_by_variant, run_scores
    from .jobs import FoldsFailed
    from .run import VARIANT_LABELS, Run

    console.print(
        f"run {run_dir}: config {config.name}, {len(training)} faces, {split.k} folds, {len(test)} test faces"
    )
    started = time.perf_counter()
    run = Run(run_dir)
    on_interrupt(
        f"the folds finished so far are kept in {run_dir} (none half-written, no claim left): run the same command "
        "again to train the rest"
    )
    teachers = None
    if config.distill.teachers:
        from .cv import in_fresh_process
        from .distill import fold_teachers, teacher_runs

        runs = teacher_runs(runs_dir, config.distill.teachers, training, split, limit)
        folds_left = [
            f
            for f in (range(split.k) if fold is None else [fold])
            if any(not run.is_finished(name, f) for name in config.trained)
        ]
        began = time.perf_counter()
        teachers = in_fresh_process(fold_teachers, runs, training, split, folds_left)
        console.print(
            f"teachers {' + '.join(config.distill.teachers)}: their blend's answers for folds {folds_left} "
            f"({time.perf_counter() - began:.0f}s)"
        )
    try:
        run_cv(
            config,
            training,
            test,
            split,
            run,
            only_fold=fold,
            limit=limit,
            teachers=teachers,
            log=log,
            executor=(
                LocalFolds(verbose, console if console.is_terminal else None)
                if on_cluster is None
                else RayFolds(on_cluster, quiet=not verbose)
            ),
        )
    except FoldsFailed as error:  # each named in its line; the others are in the run
        print(f"fkp: {error}", file=sys.stderr)
        raise typer.Exit(1) from None
    console.print(f"trained in {time.perf_counter() - started:.0f}s")
    on_interrupt(f"every fold is kept in {run_dir}: run the same command again to fit its head and score it")
    oof = out_of_fold_by_variant(run, training)  # each prediction file read once for both
    fit_run_head(run, oof)
    console.print(f"{run.head_path}: the inference head, fitted on every out-of-fold face")
    tables, overall, faces = run_scores(run, oof)
    use_tta = config.inference.tta if tta is None else tta
    used = "tta" if use_tta else "plain"
    refined = "" if config.inference.refine == "none" else f" (second stage: {config.inference.refine})"
    _print_table(
        tables[used],
        f"OOF RMSE per keypoint ({faces} faces, {VARIANT_LABELS[used]}): the leaderboard "
        f"mix{refined} on all faces and per annotation style, each network alone (net), faces "
        "labelled",
    )
    for key, label in VARIANT_LABELS.items():
        networks = tables[key].loc["overall"].filter(like=" net")
        console.print(
            f"OOF RMSE, {label}: "
            + ", ".join(f"{column} {value:.4f}" for column, value in [*overall[key].items(), *networks.items()])
        )
    if faces < len(training):
        console.print(f"{faces} of {len(training)} faces have out-of-fold predictions so far (missing folds).")
    print(f"cv_rmse={overall[used][ALL_FACES]:.5f}")


@app.command()
@one_line_errors
def tune(
    specialist: Annotated[str, typer.Option(help="The specialist to tune: full or partial.")],
    data: DataOption = None,
    tuner: Annotated[str, typer.Option(help="Search algorithm: bayesian, random or hyperband.")] = "bayesian",
    max_trials: Annotated[int, typer.Option(help="Trials in the whole search, earlier runs included.")] = 30,
    epochs: Annotated[
        Optional[int],
        typer.Option(help="Epochs per trial (Hyperband: the most) (default: the base config's train.epochs)."),
    ] = None,
    fold: Annotated[int, typer.Option(help="Search on this fold's training/validation split.")] = 0,
    k: Annotated[int, typer.Option("--folds", help="Number of folds (stored once per K in --folds-dir).")] = 5,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N training faces (smoke runs).")] = None,
    project: Annotated[
        Optional[str],
        typer.Option(
            help="Search name: trials go to runs/tune/<project>/<specialist>/ (default: the base config's name)."
        ),
    ] = None,
    config_name: Annotated[
        Optional[str],
        typer.Option(
            "--config",
            help="Base config: the settings the search does not vary [default: default with a GPU, cpu without].",
        ),
    ] = None,
    space: Annotated[str, typer.Option(help="Search space name in configs/search/ or a TOML path.")] = "default",
    out: Annotated[
        str, typer.Option(help="Config to write the best settings to: a name in ./configs or a TOML path.")
    ] = "tuned",
    overwrite: Annotated[bool, typer.Option(help="Start the search over instead of continuing it.")] = False,
    verbose: VerboseOption = False,
    chief: Annotated[
        Optional[str], typer.Option(help="HOST:PORT of the chief's oracle; alone, this process is the chief.")
    ] = None,
    worker: Annotated[Optional[str], typer.Option(help="Run trials for the chief at --chief, as worker ID.")] = None,
    runs_dir: RunsDirOption = Path("runs"),
    folds_dir: FoldsDirOption = Path("folds"),
    seed: Annotated[int, typer.Option(help="Fold seed when folds are built.")] = 42,
    overrides: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override a base config key, e.g. --set train.patience=5 (repeatable)."),
    ] = None,
    cluster: ClusterOption = None,
    cpus_per_worker: Annotated[float, typer.Option(help="With --cluster: CPUs each tuning worker asks for.")] = 1,
    gpus_per_worker: Annotated[
        Optional[float],
        typer.Option(
            help="With --cluster: GPUs each tuning worker asks for [default: 1 where the cluster has GPUs, else 0]."
        ),
    ] = None,
    retries: RetriesOption = 2,
):
    """Search one specialist's hyperparameters with Keras Tuner; write the best as a config for `fkp cv`."""
    if limit is not None and limit < 2:
        raise InputError("--limit", f"need at least 2 faces, got {limit}")
    if epochs is not None:
        check_option(epochs, TrainConfig, "train.epochs", "--epochs")
    folder, is_sample = _data(data)
    config = load_config(config_name or _machine_config(), overrides or [])

    verbose = _verbose(verbose)
    _load_backend(verbose)
    with stderr_silenced(not verbose):  # the backend's C++ start-up lines
        from . import tune as tune_module  # imports Keras and Keras Tuner: only when tuning

    search_space = tune_module.load_search_space(space, tune_module.specialist_settings(config, specialist))
    distribution = tune_module.distribution_env(chief, worker)
    on_cluster = _cluster_options(cluster, cpus_per_worker, gpus_per_worker, retries, "worker")
    if on_cluster is not None and distribution:
        raise InputError("--cluster", "Ray starts the chief and its workers itself: drop --chief and --worker")
    training, split = _training_and_folds(folder, is_sample, folds_dir, k, seed, limit)
    directory = tune_module.project_dir(runs_dir, project or config.name, specialist)
    search = {
        "name": specialist,
        "base": config,
        "space": search_space,
        "training": training,
        "folds": split,
        "fold": fold,
        "tuner": tuner,
        "max_trials": max_trials,
        "epochs": epochs,
        "limit": limit,
    }
    started = time.perf_counter()
    on_interrupt(
        f"the search's finished trials are kept in {directory} (no claim left): run the same command again to "
        "continue it"
    )
    if on_cluster is None:
        searcher = tune_module.run_search(
            **search, directory=directory, overwrite=overwrite, distribution=distribution, log=log
        )
    else:
        from .cluster import WorkersFailed, search_on_cluster

        try:
            searcher = search_on_cluster(search, directory, on_cluster, overwrite=overwrite, quiet=not verbose, log=log)
        except WorkersFailed as error:  # each named in its line; the search is in its project
            print(f"fkp: {error}", file=sys.stderr)
            raise typer.Exit(1) from None
    console.print(f"searched in {time.perf_counter() - started:.0f}s")
    if worker is not None:
        console.print(f"worker {worker} done: the chief at {chief} writes the config")
        return
    best = tune_module.best_trials(searcher, search_space)
    _print_table(best, f"Best trials of {directory} (validation RMSE in pixels, fold {fold})", index_label="")
    target = tune_module.tuned_config_path(out)
    tune_module.save_best(searcher, search_space, specialist, config, target)
    log(
        f"{target}: [{specialist}] set to the settings of {best.columns[0]}; train with them: "
        f"fkp cv --config {target.stem if target.parent == Path('configs') else target}"
    )
    print(f"best_val_rmse={best.loc['val_rmse'].iloc[0]:.5f}")


def _blend(
    names: list[str],
    data: Path | None,
    runs_dir: Path,
    out: Path,
    blend_config: str,
    tta: bool | None = None,
    allow_partial: bool = False,
) -> None:
    """`fkp blend` of the runs ``names``: the submission, its files beside it, the scores printed."""
    from .blend import SCORE_COLUMNS, blend_runs, output_paths, write_blend
    from .config import load_blend_config
    from .run import tta_words

    config = load_blend_config(blend_config)
    folder, _ = _data(data)
    training = data_module.load_training(folder)
    test = data_module.load_test(folder)
    lookup = data_module.load_lookup(folder, test)
    result = blend_runs(
        [runs_dir / name for name in names],
        training,
        config,
        tta=tta,
        allow_partial=allow_partial,
        test_styles=data_module.lookup_styles(lookup),
    )
    on_interrupt(f"{out} and the files beside it are each whole, old or new: run the same command again")
    _, clipped = write_blend(result, lookup, test, out)

    shown = Table(title=f"Out-of-fold RMSE, leaderboard-style ({result.faces} faces)")
    for column in ("", *SCORE_COLUMNS, "TTA used"):
        shown.add_column(column, justify="left" if column in ("", "TTA used") else "right")
    for name in result.runs:
        shown.add_row(f"run {name}", *(f"{v:.4f}" for v in result.scores.loc[name]), tta_words(result.tta[name]))
    shown.add_row(f"blend ({result.method})", *(f"{result.blend_scores[c]:.4f}" for c in SCORE_COLUMNS), "as runs")
    console.print(shown)
    _print_table(
        result.style_scores.rename(index=lambda name: name if name == "blend" else f"run {name}"),
        "Out-of-fold RMSE by annotation style (as used)",
        index_label="",
    )
    paths = output_paths(out)
    console.print(
        f"{out}: {len(lookup)} rows from run(s) {', '.join(result.runs)}; weights {paths['weights']}, "
        f"faces {paths['faces']}, report {paths['report']}"
    )
    console.print(
        f"{clipped} predicted Locations fell outside the image (0..{IMAGE_SIZE}) and were clipped to its edge"
    )
    print(f"blend_rmse={result.blend_scores['used']:.5f}")


@app.command(context_settings={"allow_extra_args": True})
@one_line_errors
def blend(
    context: typer.Context,
    data: DataOption = None,
    runs: Annotated[
        Optional[list[str]],
        typer.Option("--runs", help="Runs to blend: --runs A B C (weights fitted on their out-of-fold predictions)."),
    ] = None,
    run: RunOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    out: SubmissionOption = Path("submissions/submission.csv"),
    blend_config: Annotated[
        str,
        typer.Option(
            "--blend-config", help="Blend config: a name in configs/blend/ (nnls, ridge, elasticnet) or a TOML path."
        ),
    ] = "nnls",
    tta: TTAOption = None,
    allow_partial: Annotated[bool, typer.Option(help="Blend runs with missing folds.")] = False,
):
    """Blend runs (or average one run's folds) into a Kaggle submission; print each one's OOF RMSE."""
    if context.args and not runs:
        raise InputError("blend", f"unexpected argument {context.args[0]!r}: name runs after --runs")
    if runs and run:
        raise InputError("--run", "give either --run NAME or --runs A B ..., not both")
    names = [*runs, *context.args] if runs else [_run_name(run)]
    _blend(names, data, runs_dir, out, blend_config, tta, allow_partial)


@app.command()
@one_line_errors
def recipe(
    name: Annotated[str, typer.Argument(help="A recipe in configs/recipes/ (cpu-3h) or a TOML path.")],
    data: DataOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    folds_dir: FoldsDirOption = Path("folds"),
    out: SubmissionOption = Path("submissions/submission.csv"),
    verbose: VerboseOption = False,
):
    """Train a recipe's runs one after another on the same folds, then blend them; run it again to resume."""
    from .config import load_recipe

    plan = load_recipe(name)
    for number, member in enumerate(plan.runs, 1):
        settings = "".join(f" --set {setting}" for setting in member.set)
        console.print(
            f"recipe {name}, run {number} of {len(plan.runs)}: "
            f"fkp cv --folds {plan.folds} --config {member.config} --run {member.name}{settings}"
        )
        cv(
            data=data,
            k=plan.folds,
            config_name=member.config,
            run=member.name,
            runs_dir=runs_dir,
            folds_dir=folds_dir,
            overrides=member.set,
            verbose=verbose,
        )
    names = [member.name for member in plan.runs]
    console.print(f"recipe {name}: fkp blend --runs {' '.join(names)} --blend-config {plan.blend}")
    _blend(names, data, runs_dir, out, plan.blend)


@app.command()
@one_line_errors
def show(
    data: DataOption = None,
    run: RunOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    tta: TTAOption = None,
):
    """Draw a run's validation faces, learning curves and RMSE per keypoint; write its report.md."""
    from .show import show_run

    folder, _ = _data(data)
    run_dir = runs_dir / _run_name(run)
    for path in show_run(run_dir, data_module.load_training(folder), tta=tta):
        console.print(str(path))


@app.command(context_settings={"allow_extra_args": True})
@one_line_errors
def audit(
    context: typer.Context,
    data: DataOption = None,
    run: Annotated[
        Optional[str],
        typer.Option(
            help="The run whose out-of-fold answers judge the labels [default: the run `fkp cv` writes on this "
            "machine: cpu, or default with a GPU]."
        ),
    ] = None,
    runs: Annotated[
        Optional[list[str]],
        typer.Option("--runs", help="Judge by several runs' blend: --runs A B C (nnls weights fitted out of fold)."),
    ] = None,
    runs_dir: RunsDirOption = Path("runs"),
    limit: Annotated[int, typer.Option(help="How many findings to list, draw and propose fixes for.")] = 100,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Folder for findings.csv, the contact sheets and index.md [default: runs/<run>/audit/]."),
    ] = None,
    propose_corrections: Annotated[
        bool,
        typer.Option(
            "--propose-corrections",
            help="Also write corrections.proposed.csv: swaps swapped back and misplaced keypoints dropped, from the "
            "listed findings; review it and copy it to DIR/corrections.csv to train on it.",
        ),
    ] = False,
    tta: TTAOption = None,
):
    """Find the training labels most likely wrong: rank faces by how far their labels lie from out-of-fold answers."""
    if context.args and not runs:
        raise InputError("audit", f"unexpected argument {context.args[0]!r}: name runs after --runs")
    if runs and run:
        raise InputError("--run", "give either --run NAME or --runs A B ..., not both")
    if limit < 1:
        raise InputError("--limit", f"must be at least 1, got {limit}")
    from .audit import audit as audit_runs
    from .audit import write_audit
    from .run import checked_run

    folder, _ = _data(data)
    names = [*runs, *context.args] if runs else [_run_name(run)]
    if len(set(names)) < len(names):
        raise InputError("--runs", f"a run is named twice: {' '.join(names)}")
    training = data_module.load_training(folder)
    found = [checked_run(runs_dir / name, training) for name in names]
    result = audit_runs(found, training, tta)
    target = out or found[0].path / ("audit" if len(found) == 1 else "audit-" + "+".join(names))
    paths = write_audit(
        result, training.head(found[0].spec.limit), target, limit=limit, propose=propose_corrections, data_dir=folder
    )
    top = result.findings.head(limit)
    console.print(
        f"{paths[0]}: {len(top)} of {result.faces} faces listed, judged by {result.source}: "
        + ", ".join(f"{count} {kind}" for kind, count in top["kind"].value_counts().items())
    )
    for path in paths[1:]:
        console.print(str(path))


@app.command("runs")
@one_line_errors
def runs_command(data: DataOption = None, runs_dir: RunsDirOption = Path("runs"), tta: TTAOption = None):
    """Every run in one table, best cv_rmse first: config, data, folds finished, OOF RMSE per style, time."""
    from .runs import run_rows, runs_table

    folder, is_sample = _data(data)
    training = data_module.load_training(folder)
    rows = run_rows(runs_dir, training, tta)
    console.print(
        runs_table(rows, f"Runs in {runs_dir}, scored on {folder} (leaderboard-style OOF RMSE; * unfinished)")
    )


AllowPartialOption = Annotated[bool, typer.Option(help="Use a run whose folds are not all finished.")]


def _existing_run(runs_dir: Path, name: str | None):
    """The run named (or the default run), refused at once (exit 2) when it is not a finished run."""
    from .run import Run

    run = Run(runs_dir / _run_name(name))
    run.spec  # noqa: B018  (reads run.json: a missing run is an InputError here, before any model loads)
    return run


@app.command()
@one_line_errors
def predict(
    photos: Annotated[
        list[Path],
        typer.Argument(help="Photos (JPEG, PNG; colour or grey, any size) or folders of them.", show_default=False),
    ],
    run: RunOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    out: Annotated[Path, typer.Option(help="Folder for predictions.csv and one PNG per photo.")] = Path("predictions"),
    tta: TTAOption = None,
    detect: Annotated[
        bool,
        typer.Option(
            "--detect/--no-detect", help="Find faces with OpenCV's Haar cascade, or take 96x96 crops as they are."
        ),
    ] = True,
    allow_partial: AllowPartialOption = False,
):
    """Find every face in photos and predict its keypoints with a run; write predictions.csv and pictures.

    A path that is not a readable photo gets one line and exit status 2; the other photos are still done."""
    found = _existing_run(runs_dir, run)
    from .predict import check_out_folder

    check_out_folder(out)
    _load_backend()
    from .export import face_predictor, run_model
    from .predict import predict_photos

    started = time.perf_counter()
    predict = face_predictor(run_model(found, found.tta_used(tta), allow_partial))
    loaded = time.perf_counter()
    table, errors = predict_photos(
        photos,
        predict,
        out,
        detect=detect,
        log=log,
        warn=lambda error: print(f"fkp: {error}", file=sys.stderr),
    )
    photos_done = table["photo"].nunique()
    console.print(
        f"{out / 'predictions.csv'}: {int((table['face'] > 0).sum())} faces in {photos_done} photos; "
        f"models loaded and traced in {loaded - started:.1f}s, "
        f"{(time.perf_counter() - loaded) / max(photos_done, 1):.2f}s per photo"
    )
    if errors:
        raise typer.Exit(2)


@app.command()
@one_line_errors
def export(
    run: RunOption = None,
    format: Annotated[
        str, typer.Option(help="keras (.keras file), saved_model (TensorFlow SavedModel folder) or onnx.")
    ] = "keras",
    runs_dir: RunsDirOption = Path("runs"),
    out: Annotated[
        Optional[Path],
        typer.Option(help="Where to write it [default: runs/<run>/export/model.keras, saved_model/ or model.onnx]."),
    ] = None,
    tta: Annotated[
        Optional[bool],
        typer.Option("--tta/--no-tta", help="Flip TTA inside the model (default: the run's inference.tta)."),
    ] = None,
    allow_partial: AllowPartialOption = False,
):
    """Export a run as one model (every fold and specialist, optionally TTA): 96x96 faces in, 30 pixels out.

    The model averages the folds and answers as the run's stored inference head does for a full-style face (the
    style asked for all 30 coordinates): the specialist choice, then the second stage."""
    from .run import EXPORT_FORMATS

    if format not in EXPORT_FORMATS:
        raise InputError("--format", f"unknown format {format!r}: one of {', '.join(EXPORT_FORMATS)}")
    found = _existing_run(runs_dir, run)
    _load_backend()
    from .export import check_format, check_target, export_model, run_model  # loads Keras

    check_format(format)
    target = out or found.export_path(format)
    check_target(format, target)
    used = found.tta_used(tta)
    on_interrupt(f"nothing was written ({target} is as it was): run the same command again")
    model = run_model(found, used, allow_partial)
    export_model(model, format, target)
    console.print(
        f"{target}: run {found.name} as one {format} model ({'TTA' if used else 'no TTA'}), "
        "faces (N, 96, 96, 1) 0..255 in, (N, 30) pixels out"
    )


@app.command()
@one_line_errors
def sample(
    data: Annotated[Path, typer.Option("--data", help="The full competition folder.")],
    out: Annotated[Path, typer.Option(help="Where to write the sample.")],
    train: Annotated[int, typer.Option(help="Training faces.")] = 300,
    test_faces: Annotated[int, typer.Option("--test", help="Test faces (the first N ImageIds).")] = 60,
    seed: Annotated[int, typer.Option(help="Which training faces.")] = 0,
):
    """Cut a small real sample (zips + matching IdLookupTable rows) from a competition folder."""
    from .data import write_sample

    write_sample(data, out, train, test_faces, seed)
    console.print(f"{out}: {train} training faces, {test_faces} test faces")
