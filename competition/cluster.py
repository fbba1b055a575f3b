"""`fkp cv --cluster` and `fkp tune --cluster`: fold jobs and tuning workers as Ray tasks.

Ray is an optional extra (``pip install -e ".[cluster]"``), imported here only. Each unfinished fold job
becomes a task that trains in a fresh worker process (``max_calls=1``; a local run's jobs share one spawned
process, each from a cleared Keras session) and returns its artifacts, the model as the bytes of its .keras file. A task
never touches the run folder: the driver writes what comes back with ``Run.write_fold``, so workers need
no shared filesystem and a run made on a cluster is the same run as one made on one machine. A task
whose worker dies is retried; a fold that fails for good is named in one line and the others are still
trained and kept. Keras-free: the driver never loads a backend for `fkp cv`.
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .jobs import FoldJob, FoldResult, FoldsFailed
from .machine import QUIET_ENV, keep_freed_memory, stderr_silenced
from .run import FoldArtifacts, Run

LOCAL = "local"  # --cluster local: start a Ray instance on this machine


@dataclass(frozen=True)
class ClusterOptions:
    """Where Ray tasks run and what each asks for: ``--cluster``, ``--cpus-per-*``, ``--gpus-per-*``,
    ``--retries``."""

    address: str  # "local", "auto" (the cluster this machine joined with `ray start`) or HOST:PORT
    cpus: float = 1
    gpus: float | None = None  # per task; default 1 where the cluster has GPUs, else 0
    retries: int = 2  # how many times a task whose worker died runs again


def require_ray():
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("--cluster", "needs Ray: pip install -e '.[cluster]'") from None
    return ray


def _connect(options: ClusterOptions, quiet: bool, log_to_driver: bool = False):
    """The ``ray`` module, connected as ``options.address`` says."""
    ray = require_ray()
    # "local" always starts a new instance (no address would join one found on this machine)
    where = {"address": LOCAL, "include_dashboard": False} if options.address == LOCAL else {"address": options.address}
    try:
        ray.init(
            **where,
            log_to_driver=log_to_driver,
            logging_level="ERROR",
            runtime_env={"env_vars": QUIET_ENV if quiet else {}},
        )
    except (ConnectionError, ValueError) as error:
        raise InputError(
            "--cluster", f"cannot join the Ray cluster at {options.address}: {str(error).strip().splitlines()[-1]}"
        ) from None
    return ray


def _task_resources(ray, options: ClusterOptions) -> dict:
    """What each task asks for, refused with one line when no node of the cluster has it."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    gpus = options.gpus if options.gpus is not None else float(any(node.get("GPU", 0) for node in nodes))
    if not any(node.get("CPU", 0) >= options.cpus and node.get("GPU", 0) >= gpus for node in nodes):
        largest = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)))
        raise InputError(
            "--cluster",
            f"no node has {options.cpus:g} CPUs and {gpus:g} GPUs for a task "
            f"(the largest: {largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs)",
        )
    return {"num_cpus": options.cpus, "num_gpus": gpus}


def _fold_task(job: FoldJob, data: dict, progress) -> tuple[FoldResult, FoldArtifacts]:
    """One fold job on a Ray worker: report where it trains and each epoch, train, hand back the artifacts."""
    import ray

    keep_freed_memory()
    job = dataclasses.replace(job, **data)
    gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
    progress.put((job.label, "training", socket.gethostname() + (f" GPU {','.join(gpus)}" if gpus else "")))
    import keras

    from .train import epoch_scores, fit_fold

    train = job.config.specialist(job.specialist).train
    epochs = train.epochs

    def report(epoch, logs):
        progress.put((job.label, "epoch", f"epoch {epoch + 1}/{epochs}  {epoch_scores(logs)}"))

    with tempfile.TemporaryDirectory() as folder:  # Keras writes to paths; the bytes cross to the driver
        logs, model = Path(folder) / "logs", Path(folder) / "model.keras"
        result, artifacts = fit_fold(job, logs, [keras.callbacks.LambdaCallback(on_epoch_end=report)])
        artifacts.model.save(model)
        return result, dataclasses.replace(
            artifacts,
            model=model.read_bytes(),
            logs={str(path.relative_to(logs)): path.read_bytes() for path in logs.rglob("*") if path.is_file()},
        )


@dataclass
class _FoldState:
    """One fold job's line on the board."""

    state: str = "queued"
    where: str = ""
    attempts: int = 0
    epoch: str = ""


def _board(states: dict[str, _FoldState]):
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Fold jobs on the cluster")
    for column in ("fold job", "state", "where", "attempt", "last epoch"):
        table.add_column(column)
    for label, fold in states.items():
        table.add_row(Text(label), fold.state, fold.where, str(fold.attempts or ""), fold.epoch)
    return table


class RayFolds:
    """The fold executor of `fkp cv --cluster`: every claimed job a Ray task, all at once; each fold written as
    it comes back, and FoldsFailed raised after the others are written when a fold fails for good."""

    batch = None  # all the run's jobs at once, claimed by this process until the last comes back

    def __init__(self, options: ClusterOptions, quiet: bool = True):
        self.options, self.quiet = options, quiet

    def train(self, jobs: list[FoldJob], run: Run, log) -> list[FoldResult]:
        ray = _connect(self.options, self.quiet)
        try:
            return _train(ray, jobs, run, self.options, log)
        finally:
            ray.shutdown()

    def close(self) -> None:
        """Nothing held between batches: each ``train`` connects and shuts Ray down."""


def _train(ray, jobs: list[FoldJob], run: Run, options: ClusterOptions, log) -> list[FoldResult]:
    from ray.util.queue import Empty, Queue
    from rich.live import Live

    task = ray.remote(max_calls=1)(_fold_task).options(**_task_resources(ray, options), max_retries=options.retries)
    progress = Queue(actor_options={"num_cpus": 0})
    shared = {"training": jobs[0].training, "test": jobs[0].test, "folds": jobs[0].folds}
    data = ray.put(shared)  # the arrays go into the object store once, not once per task
    bare = {name: None for name in shared}  # what a task gets besides the data: the job without it
    pending = {task.remote(dataclasses.replace(job, **bare), data, progress): job for job in jobs}
    states = {job.label: _FoldState() for job in jobs}
    results, failed = {}, []
    with Live(_board(states), auto_refresh=False, transient=True) as live:  # redrawn in a terminal
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            while True:  # a task's messages are queued before it returns
                try:
                    label, kind, text = progress.get_nowait()
                except Empty:
                    break
                fold = states[label]
                if kind == "training":
                    fold.attempts += 1
                    fold.where, fold.epoch = text, ""
                    fold.state = "training" if fold.attempts == 1 else "retried, training"
                    log(
                        f"{label} {fold.state} on {text}" + (f" (attempt {fold.attempts})" if fold.attempts > 1 else "")
                    )
                else:
                    fold.epoch = text
                    log(f"{label} {text}")
            for ref in done:
                job = pending.pop(ref)
                fold = states[job.label]
                try:
                    result, artifacts = ray.get(ref)
                except ray.exceptions.RayError as error:
                    cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) else error
                    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                    fold.state = "failed"
                    log(f"{job.label} failed on {fold.where or 'no worker'} after {fold.attempts} attempt(s): {reason}")
                    failed.append(job.label)
                    continue
                run.write_fold(job.specialist, job.fold, artifacts)
                fold.state = "done"
                results[job.label] = result
                log(f"{result.summary} on {fold.where}")
            live.update(_board(states), refresh=True)
    live.console.print(_board(states))  # once more, where logs keep it too
    if failed:
        raise FoldsFailed(
            f"{len(failed)} of {len(jobs)} fold jobs failed ({', '.join(failed)}); the others are "
            "in the run: rerun the same command to train the missing ones"
        )
    return [results[job.label] for job in jobs]


def _tune_worker(search: dict, distribution: dict[str, str], quiet: bool) -> list[str]:
    """One Keras Tuner worker on a Ray worker: trials asked of the chief until the search is done, in a
    folder of its own; the ids of the trials it trained."""
    keep_freed_memory()
    with stderr_silenced(quiet):  # the backend's C++ start-up lines
        from .tune import run_search

    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder) / "search"
        run_search(**search, directory=directory, distribution=distribution)
        return sorted(path.parent.name.removeprefix("trial_") for path in directory.glob("trial_*/checkpoint*"))


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class WorkersFailed(Exception):
    """Tuning workers that failed for good; the search is kept in its project for a resume."""


CHIEF_GRACE = 45  # seconds the chief's oracle may take to see its last worker leave (Keras Tuner looks every 20 s)


def _release_own_claims(directory: Path) -> None:
    """Remove the claims on the search's project that this process holds."""
    from .claims import Holder, _read

    me = Holder.this_process()
    for path in directory.parent.glob(f"{directory.name}.claim.*"):
        try:
            holder = _read(path)
        except FileNotFoundError:
            continue
        if holder is not None and (holder.host, holder.pid) == (me.host, me.pid):
            path.unlink(missing_ok=True)


def _serve_chief(ray, search: dict, directory: Path, overwrite: bool, chief: dict, workers: dict, retries: int, log):
    """Run the chief's oracle (``tune.run_search``) in a thread of this process while the workers' tasks run, and
    end when they have: Keras Tuner's chief waits until every worker has left, and a worker that died (for
    good, after its retries) never says so, so the chief alone would wait forever. Its tuner once every worker
    finished; ``WorkersFailed``, naming the failed workers, when any did (or the chief still waits for one)."""
    import threading

    from .tune import run_search

    served, serving = {}, threading.Event()

    def serve():
        try:
            served["searcher"] = run_search(
                **search, directory=directory, overwrite=overwrite, distribution=chief, log=log, serving=serving
            )
        except BaseException as error:  # noqa: BLE001  (handed to the main thread, which raises it)
            served["error"] = error

    thread = threading.Thread(target=serve, name="fkp-tune-chief", daemon=True)  # never keeps the process alive
    thread.start()
    pending = {ref: worker for worker, ref in workers.items()}
    failed = []
    while pending and "error" not in served:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in done:
            worker = pending.pop(ref)
            try:
                trials = ray.get(ref)
            except ray.exceptions.RayError as error:
                cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) else error
                reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                log(f"[{search['name']}] {worker} failed for good after {retries + 1} attempt(s): {reason}")
                failed.append(worker)
                continue
            log(f"[{search['name']}] {worker} trained trials {', '.join(trials) or 'none'}")
    # a worker that failed never told the oracle it left, so the chief waits on: no use waiting for it then
    thread.join(timeout=0 if failed else CHIEF_GRACE)
    if "error" in served:
        raise served["error"]
    if failed or thread.is_alive():
        while thread.is_alive() and not serving.wait(timeout=1):  # the project claimed and recorded first
            pass
        if "error" in served:
            raise served["error"]
        _release_own_claims(directory)  # the chief's thread, still waiting, will not unwind its claim
        named = ", ".join(failed) or "none (the oracle still counts a trial as running)"
        raise WorkersFailed(
            f"{len(failed)} of {len(workers)} tuning workers failed for good ({named}): the search is kept in "
            f"{directory}; run the same command again to resume it"
        )
    return served["searcher"]


def search_on_cluster(
    search: dict, directory: Path, options: ClusterOptions, *, overwrite: bool = False, quiet: bool = True, log=print
):
    """``tune.run_search(**search)`` with this process as Keras Tuner's chief (the oracle, run here, records
    the search in ``directory`` so it resumes as a local one does) and one worker per task slot of the
    cluster, each a Ray task told the chief's address; the chief's tuner once the workers are done."""
    from .tune import CHIEF

    if search["tuner"] == "hyperband":
        raise InputError(
            "--tuner",
            "hyperband continues trials from weights another worker saved: with --cluster use bayesian or random",
        )
    ray = _connect(options, quiet, log_to_driver=True)
    try:
        resources = _task_resources(ray, options)
        total = ray.cluster_resources()
        asked = [
            (total.get(kind, 0), resources[key])
            for kind, key in (("GPU", "num_gpus"), ("CPU", "num_cpus"))
            if resources[key]
        ]
        slots = max(min((int(have // need) for have, need in asked), default=1), 1)
        host = ray.util.get_node_ip_address()
        chief = {
            "KERASTUNER_TUNER_ID": CHIEF,
            "KERASTUNER_ORACLE_IP": host,
            "KERASTUNER_ORACLE_PORT": str(_free_port(host)),
        }
        task = ray.remote(max_calls=1)(_tune_worker).options(**resources, max_retries=options.retries)
        shared = ray.put(search)
        workers = {
            f"worker-{index}": task.remote(shared, {**chief, "KERASTUNER_TUNER_ID": f"worker-{index}"}, quiet)
            for index in range(slots)
        }
        log(
            f"[{search['name']}] {len(workers)} workers on the cluster, each {resources['num_cpus']:g} CPUs and "
            f"{resources['num_gpus']:g} GPUs"
        )
        return _serve_chief(ray, search, directory, overwrite, chief, workers, options.retries, log)
    finally:
        ray.shutdown()
