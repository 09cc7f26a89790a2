"""Resumable sweeps: many settings of LAMs, each setting's seeds trained together as one
batched model, spread over worker processes, each finished setting × seed cached on disk so
that a rerun trains only what is missing, with progress lines and an ETA.

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
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_models.data import LAMDataset
from lam_models.lams.base import train_and_score
from lam_models.split import DataSplit

__all__ = ["RESULTS_VERSION", "Job", "ResultCache", "run"]

#: Part of every cache key: bumped when what a cached result means changes (2: the
#: published Table 1 losses measured during training; earlier caches are not reused).
RESULTS_VERSION = 2


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

    def splits(self) -> list[DataSplit]:
        """One split for every copy (read once, shared)."""
        split = DataSplit(
            self.dataset,
            self.held_out,
            self.split_seed,
            eval_dataset=self.eval_dataset,
            eval_transitions=self.eval_transitions,
        )
        return [split] * len(self.seeds)

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


class ResultCache:
    """Finished setting × seed metrics, one JSON file each (``<folder>/<job name>/seed<s>-
    <key>.json``), written atomically."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._fingerprints: dict[str, str] = {}

    def _fingerprint(self, dataset: str) -> str:
        if dataset not in self._fingerprints:
            self._fingerprints[dataset] = LAMDataset(dataset).fingerprint
        return self._fingerprints[dataset]

    def path(self, job: Job, seed: int) -> Path:
        fingerprint = self._fingerprint(job.dataset)
        if job.eval_dataset is not None:
            fingerprint += self._fingerprint(job.eval_dataset)
        key = job.key(seed, fingerprint)
        return self.folder / job.name / f"seed{seed}-{key}.json"

    def get(self, job: Job, seed: int) -> dict | None:
        path = self.path(job, seed)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, job: Job, seed: int, metrics: dict) -> None:
        path = self.path(job, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(metrics, default=float))
        partial.replace(path)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Progress:
    """Progress lines with an ETA from the measured seconds per model-update of each method."""

    def __init__(self, jobs: list[Job], workers: int):
        self.left = {id(j): j for j in jobs}
        self.total, self.workers = len(jobs), workers
        self.rate: dict[str, list[float]] = defaultdict(list)
        self.start = time.perf_counter()

    def done(self, job: Job, seconds: float) -> None:
        self.left.pop(id(job))
        self.rate[job.method].append(seconds / job.work)
        text = (
            f"[{self.total - len(self.left)}/{self.total}] {job.name}: {len(job.seeds)} "
            f"seeds × {job.config.steps} updates in {seconds:.0f} s; elapsed "
            f"{_clock(time.perf_counter() - self.start)}"
        )
        if self.left:
            unknown = {j.method for j in self.left.values()} - set(self.rate)
            if unknown:
                text += f"; ETA after the first {'/'.join(sorted(unknown))} setting"
            else:
                rest = sum(j.work * float(np.mean(self.rate[j.method])) for j in self.left.values())
                text += f"; ETA {_clock(rest / self.workers)}"
        print(text, flush=True)


def _train_score(*arguments: Any) -> tuple[float, list[dict]]:
    """:func:`train_and_score`'s training seconds (the training's own clock) and metrics,
    not the model: from a worker on a GPU its tensors would come back as CUDA handles of a
    process about to exit."""
    lam, metrics = train_and_score(*arguments)
    return lam.history[0]["seconds"][-1], metrics


def run(
    jobs: Sequence[Job],
    cache: ResultCache,
    workers: int = 1,
    device: str = "cpu",
    pictures: Path | None = None,
) -> dict[tuple[str, int], dict]:
    """Every job's metrics per seed, ``{(job.name, seed): metrics}``: cached ones read,
    the others trained now (a job's missing seeds together) and cached as each job ends.

    ``workers`` > 1: that many spawned processes of one torch thread each (jobs travel as
    their arguments: each worker reads its data). ``pictures``: each trained job writes its
    method's pictures of its first seed (:meth:`LAM.plots`) into ``pictures/<job name>/``.
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
    progress = _Progress(todo, workers)
    last: dict[tuple, list[DataSplit]] = {}

    def arguments(job: Job) -> tuple:
        if workers > 1:
            splits = job.splits()  # pickled as their arguments: the worker reads the data
        else:  # in this process: read a dataset once for the jobs on it in a row
            key = (job.dataset, job.held_out, job.split_seed, job.eval_transitions,
                   job.eval_dataset)  # fmt: skip
            if key not in last:
                last.clear()
                last[key] = job.splits()[:1]
            splits = last[key] * len(job.seeds)
        folder = None if pictures is None else Path(pictures) / job.name
        return job.method, job.config, splits, job.seeds, device, folder

    def done(job: Job, seconds: float, metrics: list[dict]) -> None:
        for seed, m in zip(job.seeds, metrics, strict=True):
            cache.put(job, seed, m)
            results[(job.name, seed)] = m
        progress.done(job, seconds)

    order = sorted(todo, key=lambda j: (-j.work, j.dataset))  # longest first, data together
    if workers == 1:
        for job in order:
            done(job, *_train_score(*arguments(job)))
        return results
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    ) as pool:
        pending = {pool.submit(_train_score, *arguments(job)): job for job in order}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                done(job, *future.result())
    return results
