"""The runner of the package's many-run work: jobs in, results out.

:func:`execute` runs :class:`Task` s (a function and its arguments) in this process, in
worker processes on this machine, or as Ray tasks on a cluster (:class:`RunnerOptions`:
``--workers``, ``--ray``), prints a progress line with an ETA as each ends, hands each
result to a callback as it arrives and returns the results in the tasks' order. Ctrl-C
cancels cleanly: the tasks not started are dropped, the workers are stopped, what ended is
kept, and KeyboardInterrupt is raised again. Given a :class:`ResultCache`, a task with a
``key`` is run only if its result is not cached yet, and cached as it ends: a rerun does
only what is missing. Every sweep of the package runs on it: the report card
(:mod:`lam_models.benchmark`) and the studies of ``examples/``.

A cached result is keyed by what it depends on: the caller's record (the method, its
configuration, the data's fingerprint, the seeds...), :data:`RESULTS_VERSION`, the
package's version, a hash of the code (:func:`code_hash`: every source file of
``lam_models``, and the file of a task's function or method when it lives elsewhere, such
as an example script or the user's module) and the kind of device (``cpu``, ``cuda``), so a
changed model never reads a stale result.

On top of it, resumable sweeps of LAMs: each setting's seeds trained together as one
batched model, each finished setting × seed cached::

    jobs = [Job("low", "vq-published", config, "lam_envs/table1-grid-low-uniform-v0",
                seeds=(0, 1, 2, 3, 4), held_out=0.05), ...]
    results = run(jobs, ResultCache("outputs/x/cache"), RunnerOptions(workers=2),
                  pictures=Path("outputs/x/pictures"))
    results[("low", 3)]          # seed 3's metrics (LAM.metrics), trained now or cached

A job's copies share one split (one train/held-out split, read once; the seeds vary the
initialisation, batches and augmentation).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import re
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_envs.utils.config import Checked, option
from lam_envs.utils.flags import add_flags, from_flags
from lam_envs.utils.validate import check_int
from lam_models.data import LAMDataset
from lam_models.lams.base import resolve_device, train_and_score
from lam_models.split import DataSplit
from lam_models.sweep_code import (
    RESULTS_VERSION,
    code_hash,
    modules_of,
    portable,
    timed,
    versioned,
)

__all__ = ["RESULTS_VERSION", "Job", "ResultCache", "RunnerOptions", "Task", "add_runner_flags"]
__all__ += ["code_hash", "execute", "run", "runner_options"]


# ------------------------------------------------------------------------------ options


def _at_least(low: int):
    """A field check naming the flag: '--workers must be >= 1, got 0'."""
    return lambda name, value: check_int("--" + name.replace("_", "-"), value, low=low)


@dataclass(frozen=True)
class RunnerOptions(Checked):
    """Where and how a sweep's jobs run, and where their results are kept: the same flags
    on every sweep command (:func:`add_runner_flags`)."""

    workers: int = option(
        2, "jobs at once on this machine: worker processes of one torch thread each",
        check=_at_least(1),
    )  # fmt: skip
    ray: str | None = option(
        None,
        "run the jobs as Ray tasks instead (pip install 'lam-envs[ray]'): on the cluster at "
        "ADDRESS (what `ray start --head` prints, or auto), or with no ADDRESS on a Ray "
        "started on this machine; --cache must then be a path every node sees",
        cli={"nargs": "?", "const": "", "metavar": "ADDRESS"},
    )
    gpus_per_job: float = option(
        1.0,
        "with --ray and a CUDA --device, the share of a GPU each job asks for (0.25: four "
        "jobs share one GPU)",
        above=0,
    )
    cpus_per_job: int = option(
        1, "with --ray, the CPUs each job asks for (its torch threads)", check=_at_least(1)
    )
    max_retries: int = option(
        2,
        "with --ray, how many times a failed job is tried again (a lost node, a CUDA "
        "error) before the run stops",
        check=_at_least(0),
    )
    device: str = option("cpu", "cpu, cuda, cuda:N or auto", cli={"metavar": "DEVICE"})
    cache: str | None = option(
        None,
        "where finished jobs are kept, so that a rerun trains only what is missing "
        "(default: OUT/cache); with --ray, a path every node sees",
        cli={"metavar": "DIR"},
    )
    overwrite: bool = option(False, "replace the results of an earlier run in --out")

    def resolved_device(self) -> str:
        """The device, checked here (``auto`` resolved); with ``--ray``, a CUDA device is the
        cluster's to have and is passed on as given."""
        if self.ray is not None and self.device.startswith("cuda"):
            return self.device
        return str(resolve_device(self.device))

    def cache_folder(self, out: str | Path) -> Path:
        """Where the results are kept: ``--cache``, or ``<out>/cache``."""
        return Path(self.cache) if self.cache is not None else Path(out) / "cache"


def add_runner_flags(
    parser: Any,
    base: RunnerOptions | None = None,
    skip: tuple[str, ...] = (),
    shown: dict[str, Any] | None = None,
) -> None:
    """The runner's flags (a group "running", but for ``skip``), their defaults shown from
    ``base`` (or as ``shown`` says)."""
    defaults = {**dataclasses.asdict(base or RunnerOptions()), **(shown or {})}
    add_flags(parser, RunnerOptions, skip, defaults, title="running")


def runner_options(args: Any, base: RunnerOptions | None = None) -> RunnerOptions:
    """The :class:`RunnerOptions` of parsed flags, over ``base`` (a bad value: ValueError)."""
    return from_flags(RunnerOptions, args, base or RunnerOptions())


# ------------------------------------------------------------------------------ the runner


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function(*args)``. ``function`` is a module-level function: of
    an importable module, or of a script (an example of ``examples/``, loaded by its path in
    a worker; the path must be the same on every node of a Ray cluster).

    ``name`` and ``detail`` make its progress line (``[3/8] name: detail in 12 s``);
    ``work`` (any unit, e.g. seeds × updates) and ``kind`` make the ETA: the seconds per
    unit of work are measured per kind, on the tasks that ended. ``key``: what its result
    depends on (JSON), for :func:`execute`'s cache; None: never cached. The result must then
    be JSON too.
    """

    name: str
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    work: float = 1.0
    kind: str = ""
    detail: str = ""
    key: dict[str, Any] | None = None


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Progress:
    """Progress lines with an ETA from the measured seconds per unit of work of each kind."""

    def __init__(self, tasks: dict[int, Task], total: int, workers: int):
        self.left = dict(tasks)
        self.total, self.workers = total, workers
        self.rate: dict[str, list[float]] = defaultdict(list)
        self.start = time.perf_counter()

    def done(self, index: int, seconds: float) -> None:
        task = self.left.pop(index)
        self.rate[task.kind].append(seconds / task.work if task.work else 0.0)
        detail = f" {task.detail}" if task.detail else ""
        text = (
            f"[{self.total - len(self.left)}/{self.total}] {task.name}:{detail} in "
            f"{seconds:.0f} s; elapsed {_clock(time.perf_counter() - self.start)}"
        )
        if self.left:
            unknown = {t.kind for t in self.left.values()} - set(self.rate)
            if len(unknown) == 1:
                text += f"; ETA after the first {unknown.pop()} task"
            elif unknown:
                text += f"; ETA after the first task of {len(unknown)} more kinds"
            else:
                rest = sum(t.work * float(np.mean(self.rate[t.kind])) for t in self.left.values())
                text += f"; ETA {_clock(rest / self.workers)}"
        print(text, flush=True)

    def cancelled(self) -> None:
        print(
            f"cancelled: {self.total - len(self.left)} of {self.total} done (kept), "
            f"{len(self.left)} dropped",
            file=sys.stderr,
            flush=True,
        )


def _worker_start(threads: int = 1) -> None:
    """A worker: ``threads`` torch threads; Ctrl-C is the main process's to handle (it
    stops us)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Drop the tasks not started and stop the running ones now."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # gone at shutdown
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()
    if manager is not None:  # it reaps the workers too: done once it has ended
        manager.join(30)


def _run_processes(todo: dict[int, Task], processes: int, ended, progress) -> None:
    pool = ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start
    )
    try:
        pending: dict[Future, int] = {}
        for index, task in todo.items():
            runner, args = portable(task)
            pending[pool.submit(runner, *args)] = index
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                ended(pending.pop(future), *future.result())
    except KeyboardInterrupt:
        _stop(pool)
        progress.cancelled()
        raise
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()


def execute(
    tasks: Sequence[Task],
    workers: int | RunnerOptions = 1,
    on_result: Callable[[Task, Any], None] | None = None,
    cache: ResultCache | None = None,
) -> list[Any]:
    """Every task's result, in the order of ``tasks``.

    ``workers``: the number of workers on this machine, or a :class:`RunnerOptions`. One
    worker: one after the other in this process, in the given order. More: a pool of
    ``min(workers, len(tasks))`` spawned processes of one torch thread each, started in
    the given order. ``--ray``: Ray tasks of ``cpus_per_job`` CPUs (and, on a CUDA device,
    ``gpus_per_job`` of a GPU) each, a failed one tried again up to ``max_retries`` times.
    Whatever runs them, the results are the same.

    ``cache``: a task with a ``key`` whose result it holds is not run (its result is read);
    the others' results are written as they end, so a rerun resumes. ``on_result(task,
    result)`` is called here, in this process, as each task run now ends. A task that
    raises stops the run: the others are cancelled and its exception is raised here (on
    Ray, as a :class:`~lam_models._commands.RunnerError` once its tries are spent). Ctrl-C
    (KeyboardInterrupt) cancels the same way and is raised again once the workers have
    stopped.
    """
    options = workers if isinstance(workers, RunnerOptions) else RunnerOptions(workers=workers)
    tasks = list(tasks)
    results: list[Any] = [None] * len(tasks)
    todo: dict[int, Task] = {}
    keys: dict[int, str] = {}
    for index, task in enumerate(tasks):
        if cache is not None and task.key is not None:
            keys[index] = cache.key(task, options.device)
            results[index] = cache.read(_slug(task.name), keys[index])
            if results[index] is not None:
                continue
        todo[index] = task
    if cache is not None:
        where = "on Ray" if options.ray is not None else f"{options.workers} worker(s)"
        print(f"{len(tasks) - len(todo)} cached, {len(todo)} to run, {where}", flush=True)
    processes = min(options.workers, len(todo))
    progress = _Progress(todo, len(todo), processes or 1)

    def ended(index: int, seconds: float, result: Any) -> None:
        results[index] = result
        if index in keys:
            cache.write(_slug(tasks[index].name), keys[index], result)
        if on_result is not None:
            on_result(tasks[index], result)
        progress.done(index, seconds)

    if options.ray is not None and todo:
        from lam_models.sweep_ray import run_ray

        run_ray(todo, options, ended, progress)
    elif processes <= 1:
        try:
            for index, task in todo.items():
                ended(index, *timed(task.function, task.args))
        except KeyboardInterrupt:
            progress.cancelled()
            raise
    else:
        _run_processes(todo, processes, ended, progress)
    return results


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


# ------------------------------------------------------------------------------ the cache


class ResultCache:
    """Finished results, one JSON file each (``<folder>/<name>/<key>.json``), written
    atomically. A sweep :class:`Job`'s seed is ``<folder>/<job name>/seed<s>-<hash>.json``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._fingerprints: dict[str, str] = {}

    def file(self, name: str, key: str) -> Path:
        return self.folder / name / f"{key}.json"

    def read(self, name: str, key: str) -> Any | None:
        """The result stored under ``name``/``key``, or None."""
        path = self.file(name, key)
        return json.loads(path.read_text()) if path.is_file() else None

    def write(self, name: str, key: str, value: Any) -> None:
        path = self.file(name, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(value, default=float))
        partial.replace(path)

    def key(self, task: Task, device: str) -> str:
        """The key of a :class:`Task`'s result: its ``key`` record, the code (the package's,
        and the files of the modules outside it whose functions or classes the task refers
        to: a script's, the user's) and the device."""
        return versioned(task.key, device, *modules_of(task))

    # A sweep job's seeds.

    def _fingerprint(self, dataset: str) -> str:
        if dataset not in self._fingerprints:
            self._fingerprints[dataset] = LAMDataset(dataset).fingerprint
        return self._fingerprints[dataset]

    def _seed_key(self, job: Job, seed: int, device: str) -> str:
        fingerprint = self._fingerprint(job.dataset)
        if job.eval_dataset is not None:
            fingerprint += self._fingerprint(job.eval_dataset)
        return f"seed{seed}-{job.key(seed, fingerprint, device)}"

    def path(self, job: Job, seed: int, device: str = "cpu") -> Path:
        return self.file(job.name, self._seed_key(job, seed, device))

    def get(self, job: Job, seed: int, device: str = "cpu") -> dict | None:
        return self.read(job.name, self._seed_key(job, seed, device))

    def put(self, job: Job, seed: int, metrics: dict, device: str = "cpu") -> None:
        self.write(job.name, self._seed_key(job, seed, device), metrics)


# ------------------------------------------------------------------------- sweeps of LAMs


@dataclass(frozen=True)
class Job:
    """One setting: ``method`` with ``config`` on ``dataset``, its ``seeds`` trained together
    on one shared split. ``name`` labels its progress line, cache folder and pictures."""

    name: str
    method: str
    config: Any
    dataset: str
    seeds: tuple[int, ...]
    held_out: float = 0.1
    split_seed: int = 0
    eval_transitions: int | None = None
    eval_dataset: str | None = None  # score the held-out part of this dataset instead

    @property
    def work(self) -> int:
        """Model-updates: copies × updates."""
        return len(self.seeds) * self.config.steps

    @property
    def split_options(self) -> tuple:
        """What its split is made of: (dataset, held_out, split_seed, eval_dataset,
        eval_transitions)."""
        return (self.dataset, self.held_out, self.split_seed, self.eval_dataset,
                self.eval_transitions)  # fmt: skip

    def splits(self) -> list[DataSplit]:
        """One split for every copy (read once, shared)."""
        return [_split(self.split_options)] * len(self.seeds)

    def key(self, seed: int, fingerprint: str, device: str = "cpu") -> str:
        """What seed ``seed``'s result depends on, hashed (``fingerprint``: of the data, and
        of the eval dataset when there is one; the code and the device, :func:`code_hash`)."""
        record = {
            "method": self.method,
            "config": dataclasses.asdict(self.config),
            "data": fingerprint,
            "held_out": self.held_out,
            "split_seed": self.split_seed,
            "eval": self.eval_transitions,
            "seed": seed,
        }
        if self.eval_dataset is not None:
            record["eval_data"] = self.eval_dataset
        return versioned(record, device)


# The split last read in this process: the jobs on one dataset, run in a row, read it once.
_last_split: dict[tuple, DataSplit] = {}


def _split(options: tuple) -> DataSplit:
    if options not in _last_split:
        _last_split.clear()
        dataset, held_out, split_seed, eval_dataset, eval_transitions = options
        _last_split[options] = DataSplit(
            dataset,
            held_out,
            split_seed,
            eval_dataset=eval_dataset,
            eval_transitions=eval_transitions,
        )
    return _last_split[options]


def _train_score(
    method: str, config: Any, split: tuple, seeds: tuple[int, ...], device: str, pictures
) -> list[dict]:
    """:func:`train_and_score`'s metrics, not the model: from a worker on a GPU its tensors
    would come back as CUDA handles of a process about to exit."""
    splits = [_split(split)] * len(seeds)
    return train_and_score(method, config, splits, seeds, device, pictures)[1]


def run(
    jobs: Sequence[Job],
    cache: ResultCache,
    runner: int | RunnerOptions = 1,
    device: str | None = None,
    pictures: Path | None = None,
) -> dict[tuple[str, int], dict]:
    """Every job's metrics per seed, ``{(job.name, seed): metrics}``: cached ones read,
    the others trained now (a job's missing seeds together, longest jobs first) by
    :func:`execute` and cached as each job ends.

    ``runner``: :class:`RunnerOptions`, or a number of workers (spawned processes of one
    torch thread each; each reads its data). ``device``: where the models train (default:
    the runner's). ``pictures``: each trained job writes its method's pictures of its first
    seed (:meth:`LAM.plots`) into ``pictures/<job name>/``.
    """
    options = runner if isinstance(runner, RunnerOptions) else RunnerOptions(workers=runner)
    device = device or options.device
    options = dataclasses.replace(options, device=device)
    results: dict[tuple[str, int], dict] = {}
    todo = []
    for job in jobs:
        missing = []
        for seed in job.seeds:
            cached = cache.get(job, seed, device)
            if cached is None:
                missing.append(seed)
            else:
                results[(job.name, seed)] = cached
        if missing:
            todo.append(dataclasses.replace(job, seeds=tuple(missing)))
    where = "on Ray" if options.ray is not None else f"{options.workers} worker(s)"
    print(
        f"{len(results)} cached, {sum(len(j.seeds) for j in todo)} to train ({len(todo)} "
        f"batched runs) on {device}, {where}",
        flush=True,
    )
    order = sorted(todo, key=lambda j: (-j.work, j.dataset))  # longest first, data together
    by_task: dict[int, Job] = {}
    tasks = []
    for job in order:
        folder = None if pictures is None else Path(pictures) / job.name
        task = Task(
            job.name,
            _train_score,
            (job.method, job.config, job.split_options, job.seeds, device, folder),
            work=job.work,
            kind=job.method,
            detail=f"{len(job.seeds)} seeds × {job.config.steps} updates",
        )
        by_task[id(task)] = job
        tasks.append(task)

    def done(task: Task, metrics: list[dict]) -> None:
        job = by_task[id(task)]
        for seed, m in zip(job.seeds, metrics, strict=True):
            cache.put(job, seed, m, device)
            results[(job.name, seed)] = m

    try:
        execute(tasks, options, done)
    finally:
        _last_split.clear()  # the data is not held after the run
    return results
