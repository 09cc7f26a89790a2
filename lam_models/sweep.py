"""The runner of the package's many-run work: jobs in, results out.

:func:`execute` runs :class:`Task` s (a module-level function and its arguments) in this
process or in worker processes, prints a progress line with an ETA as each ends, hands
each result to a callback as it arrives (where callers cache it) and returns the results
in the tasks' order. Ctrl-C cancels cleanly: the tasks not started are dropped, the
workers are stopped, what ended is kept, and KeyboardInterrupt is raised again.
:class:`ResultCache` keeps finished results on disk, one JSON file each, so that a rerun
does only what is missing. The report card (:mod:`lam_models.benchmark`) and the studies
of ``examples/`` run on it.

On top of it, resumable sweeps of LAMs: each setting's seeds trained together as one
batched model, each finished setting × seed cached::

    jobs = [Job("low", "vq-published", config, "lam_envs/table1-grid-low-uniform-v0",
                seeds=(0, 1, 2, 3, 4), held_out=0.05), ...]
    results = run(jobs, ResultCache("outputs/x/cache"), workers=2, device="cpu",
                  pictures=Path("outputs/x/pictures"))
    results[("low", 3)]          # seed 3's metrics (LAM.metrics), trained now or cached

A job's copies share one split (one train/held-out split, read once; the seeds vary the
initialisation, batches and augmentation). A cached result is keyed by a hash of what it
depends on: the method, its configuration, the dataset's fingerprint, the split and the
seed, so a changed setting never reads a stale result and never overwrites another's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
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

from lam_models.data import LAMDataset
from lam_models.lams.base import train_and_score
from lam_models.split import DataSplit

__all__ = ["RESULTS_VERSION", "Job", "ResultCache", "Task", "execute", "run"]

#: Part of every cache key: bumped when what a cached result means changes (2: the
#: published Table 1 losses measured during training; earlier caches are not reused).
RESULTS_VERSION = 2


# ------------------------------------------------------------------------------ the runner


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function(*args)``, where ``function`` is importable by name (a
    module-level function: worker processes receive it pickled, with its arguments).

    ``name`` and ``detail`` make its progress line (``[3/8] name: detail in 12 s``);
    ``work`` (any unit, e.g. seeds × updates) and ``kind`` make the ETA: the seconds per
    unit of work are measured per kind, on the tasks that ended.
    """

    name: str
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    work: float = 1.0
    kind: str = ""
    detail: str = ""


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Progress:
    """Progress lines with an ETA from the measured seconds per unit of work of each kind."""

    def __init__(self, tasks: Sequence[Task], workers: int):
        self.left = dict(enumerate(tasks))
        self.total, self.workers = len(tasks), workers
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


def _timed(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[float, Any]:
    """``function(*args)`` and the seconds it took (where it ran)."""
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def _worker_start() -> None:
    """A worker: one torch thread; Ctrl-C is the main process's to handle (it stops us)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Drop the tasks not started and stop the running ones now."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # gone at shutdown
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


def execute(
    tasks: Sequence[Task],
    workers: int = 1,
    on_result: Callable[[Task, Any], None] | None = None,
) -> list[Any]:
    """Every task's result, in the order of ``tasks``.

    ``workers`` = 1: one after the other in this process, in the given order. More: a pool
    of ``min(workers, len(tasks))`` spawned processes of one torch thread each, started in
    the given order. ``on_result(task, result)`` is called here, in this process, as each
    task ends (cache it there, and a rerun resumes). A task that raises stops the run: the
    others are cancelled and its exception is raised here. Ctrl-C (KeyboardInterrupt)
    cancels the same way and is raised again once the workers have stopped.
    """
    tasks = list(tasks)
    results: list[Any] = [None] * len(tasks)
    processes = min(workers, len(tasks))
    progress = _Progress(tasks, processes or 1)

    def ended(index: int, seconds: float, result: Any) -> None:
        results[index] = result
        if on_result is not None:
            on_result(tasks[index], result)
        progress.done(index, seconds)

    if workers == 1 or not tasks:
        try:
            for index, task in enumerate(tasks):
                ended(index, *_timed(task.function, task.args))
        except KeyboardInterrupt:
            progress.cancelled()
            raise
        return results
    pool = ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start
    )
    try:
        pending: dict[Future, int] = {
            pool.submit(_timed, task.function, task.args): index for index, task in enumerate(tasks)
        }
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
    return results


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

    # A sweep job's seeds.

    def _fingerprint(self, dataset: str) -> str:
        if dataset not in self._fingerprints:
            self._fingerprints[dataset] = LAMDataset(dataset).fingerprint
        return self._fingerprints[dataset]

    def _seed_key(self, job: Job, seed: int) -> str:
        fingerprint = self._fingerprint(job.dataset)
        if job.eval_dataset is not None:
            fingerprint += self._fingerprint(job.eval_dataset)
        return f"seed{seed}-{job.key(seed, fingerprint)}"

    def path(self, job: Job, seed: int) -> Path:
        return self.file(job.name, self._seed_key(job, seed))

    def get(self, job: Job, seed: int) -> dict | None:
        return self.read(job.name, self._seed_key(job, seed))

    def put(self, job: Job, seed: int, metrics: dict) -> None:
        self.write(job.name, self._seed_key(job, seed), metrics)


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

    def key(self, seed: int, fingerprint: str) -> str:
        """What seed ``seed``'s result depends on, hashed (``fingerprint``: of the data, and
        of the eval dataset when there is one)."""
        record = {
            "results": RESULTS_VERSION,
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
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


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
    workers: int = 1,
    device: str = "cpu",
    pictures: Path | None = None,
) -> dict[tuple[str, int], dict]:
    """Every job's metrics per seed, ``{(job.name, seed): metrics}``: cached ones read,
    the others trained now (a job's missing seeds together, longest jobs first) by
    :func:`execute` and cached as each job ends.

    ``workers`` > 1: that many spawned processes of one torch thread each (each reads its
    data). ``pictures``: each trained job writes its method's pictures of its first seed
    (:meth:`LAM.plots`) into ``pictures/<job name>/``.
    """
    results: dict[tuple[str, int], dict] = {}
    todo = []
    for job in jobs:
        missing = []
        for seed in job.seeds:
            cached = cache.get(job, seed)
            if cached is None:
                missing.append(seed)
            else:
                results[(job.name, seed)] = cached
        if missing:
            todo.append(dataclasses.replace(job, seeds=tuple(missing)))
    print(
        f"{len(results)} cached, {sum(len(j.seeds) for j in todo)} to train ({len(todo)} "
        f"batched runs) on {device}, {workers} worker(s)",
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
            cache.put(job, seed, m)
            results[(job.name, seed)] = m

    try:
        execute(tasks, workers, done)
    finally:
        _last_split.clear()  # the data is not held after the run
    return results
