"""Collect a Minari dataset with partial action labels.

    python -m lam_envs.collect --policy snaking
    python -m lam_envs.collect --env LinearLAM-v0 --preset other_agents --transitions 1e6
    python -m lam_envs.collect --recipe datasets/grid-low-correlated.toml
    python -m lam_envs.collect --transitions 1e8 --workers 16          # every core
    python -m lam_envs.collect --transitions 1e9 --ray auto            # a Ray cluster

Rolls the native vector environment out under a behaviour policy, and writes the episodes
to a Minari dataset (HDF5) in chunks, so memory does not grow with the dataset. A fraction
of the transitions (or of whole episodes) keeps its action; the others get a sentinel
(NaN for continuous actions, -1 for discrete ones). The ground truth of every step sits
under ``infos/oracle``, for evaluation only. See docs/dataset.md (the dataset contract).

What to collect is a ``CollectConfig`` (``lam_envs.collect.config``, validated there).
Work is cut into blocks of episodes whose randomness depends only on the seed and the
block (``lam_envs.collect.shards``), so N worker processes (``--workers``) or Ray tasks
(``--ray``, ``lam_envs.collect.workers``) write N shard files of the same data that one process
would write; ``lam_envs.collect.writer`` links them into one Minari dataset, and
``lam_envs.utils.staging`` publishes it atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

import lam_envs
from lam_envs.collect import shards as _shards
from lam_envs.collect.config import (
    CollectConfig,
    check_count,
)
from lam_envs.collect.workers import Job, Supervisor, ray_session, run_processes, run_ray
from lam_envs.collect.writer import DatasetStaging, check_target
from lam_envs.dataset.contract import CONTRACT_VERSION
from lam_envs.utils import staging
from lam_envs.utils.cli import progress as progress_bar
from lam_envs.utils.outputs import DiskFull, check_path, disk_full, format_bytes

__all__ = [
    "CollectConfig",
    "CollectSummary",
    "build_parser",
    "collect",
    "default_root",
    "main",
]

#: Bytes of HDF5 objects and links per episode, beside its arrays (an estimate: the disk
#: check asks for this much more per episode than the arrays take).
_OVERHEAD_PER_EPISODE = 6000


@dataclass
class CollectSummary:
    dataset_id: str
    path: Path
    transitions: int
    episodes: int
    labelled: int
    seconds: float
    workers: str = "1 (in this process)"
    asked_transitions: int | None = None

    def __str__(self) -> str:
        rate = self.transitions / max(self.seconds, 1e-9)
        rounded = ""
        if self.asked_transitions is not None and self.asked_transitions != self.transitions:
            rounded = (
                f" (asked {self.asked_transitions:,}: rounded up to whole episodes of "
                f"{self.transitions // self.episodes} steps)"
            )
        return (
            f"dataset {self.dataset_id}\n"
            f"  path         {self.path}\n"
            f"  transitions  {self.transitions:,} in {self.episodes:,} episodes{rounded}\n"
            f"  labelled     {self.labelled:,} transitions "
            f"({self.labelled / self.transitions:.2%})\n"
            f"  workers      {self.workers}\n"
            f"  throughput   {rate:,.0f} transitions/s ({self.seconds:.2f} s)"
        )


class _StopRequests:
    """Turns SIGINT/SIGTERM into a flag checked at safe points.

    A KeyboardInterrupt raised at an arbitrary bytecode can land inside h5py's or
    weakref's callbacks, where Python prints and ignores it; checking a flag between
    steps makes the interruption certain, and the staging folder is then removed.
    """

    def __enter__(self):
        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._request)
        return self

    def _request(self, signum, frame):
        self.requested = True

    def check(self):
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def default_root() -> Path:
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def usable_cpus() -> int:
    """CPU cores this process may use (its affinity, where the system tells)."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _root(root: Path | str | None) -> Path:
    if root is None:
        return default_root()
    if str(root).strip() == "":
        raise ValueError("--root must not be empty (leave it out for Minari's root)")
    return check_path(root, "--root")


def collect(
    config: CollectConfig,
    root: Path | str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    workers: int | None = 1,
    ray: str | None = None,
) -> CollectSummary:
    """Roll out, label and write the dataset described by ``config``; see the module doc.

    ``workers``: processes to write shards in parallel (1: in this process; None: one per
    CPU core, or per Ray CPU); capped by the number of blocks of about
    ``BLOCK_TRANSITIONS``. ``ray``: run the shards as Ray tasks instead, '' for
    ``ray.init()``'s default, or an address ('auto', 'ray://host:10001'); an existing
    ``ray.init`` of the caller is used as it is, and ``root`` must be a path every Ray
    node sees. Every choice gives the same arrays.
    """
    start = time.perf_counter()
    root = _root(root).absolute()
    asked = None if workers is None else check_count("workers", workers, low=1)
    staging.check_writable(root)
    dataset_id = config.dataset_id or config.default_dataset_id()
    _check_path_length(root, dataset_id)
    check_target(root, dataset_id, overwrite)  # before anything is shown or started
    single = gym.make(config.env, max_episode_steps=config.episode_length, **config.env_kwargs_full)
    lam_envs.make_policy(config.policy, single, **config.knobs)  # refuses a misfit now
    n_blocks = _shards.num_blocks(config)
    metadata = _metadata(config, dataset_id)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_disk_full_in_one_line(root, dataset_id))  # exits last
        cpus = stack.enter_context(ray_session(ray)) if ray is not None else usable_cpus()
        n_jobs = min(cpus if asked is None else asked, n_blocks)
        check_resources(config, single, root, n_jobs)
        stop = stack.enter_context(_StopRequests())
        stage = stack.enter_context(
            DatasetStaging(
                root,
                dataset_id,
                single.spec,
                single.observation_space,
                single.action_space,
                metadata,
                overwrite,
            )
        )
        bar = stack.enter_context(
            progress_bar(
                total=config.episodes * config.episode_length,
                desc=dataset_id.split("/")[-1][:40],
                unit="tr",
                unit_scale=True,
                enabled=progress,
            )
        )
        jobs = [
            Job(i, blocks, stage.shard_path(i))
            for i, blocks in enumerate(_shards.split_blocks(n_blocks, n_jobs))
        ]
        links = _links(config, stage, jobs)
        # links are made while workers run
        parent = Supervisor(bar.update, stop.check, idle=lambda: next(links, None))
        if ray is not None:
            results = run_ray(config, jobs, parent)
            how = f"{len(jobs)} Ray task(s)"
        elif len(jobs) > 1:
            results = run_processes(config, jobs, parent)
            how = f"{len(jobs)} processes"
        else:
            job = jobs[0]
            results = [_shards.run_shard(config, job.blocks, job.path, bar.update, stop.check)]
            how = "1 (in this process)"
        if asked is not None and asked > len(jobs):
            how += f"; {asked} asked, but the work is {n_blocks} block(s) of episodes"
        for _ in links:
            pass
        transitions = sum(r.transitions for r in results)
        labelled = sum(r.labelled for r in results)
        extra = {"lam_envs": {**metadata["lam_envs"], "labelled": labelled, "shards": len(jobs)}}
        path = stage.publish(config.episodes, transitions, extra)
    return CollectSummary(
        dataset_id,
        path,
        transitions,
        config.episodes,
        labelled,
        time.perf_counter() - start,
        how,
        config.transitions,
    )


@contextlib.contextmanager
def _disk_full_in_one_line(root: Path, dataset_id: str):
    """A full disk, in this process or a worker, raised from HDF5 or json as a many-line
    error, becomes one ``DiskFull`` line (the staging folder is gone by then)."""
    try:
        yield
    except Exception as error:
        if not disk_full(error):
            raise
        raise DiskFull(
            errno.ENOSPC,
            f"no space left on the device of {root} while writing dataset {dataset_id!r}: "
            "nothing was published and the partial data was removed; free some space or "
            "choose another --root",
        ) from None


def _links(config: CollectConfig, stage: DatasetStaging, jobs: list[Job], chunk: int = 2048):
    """Make the main file's links, ``chunk`` at a time (a generator: one chunk per step)."""
    for job in jobs:
        episodes = _shards.block_episodes(config, job.blocks.start, job.blocks.stop)
        for first in range(episodes.start, episodes.stop, chunk):
            stage.link(job.path.name, range(first, min(first + chunk, episodes.stop)))
            yield


def _metadata(config: CollectConfig, dataset_id: str) -> dict[str, Any]:
    import minari  # here, not above: worker processes import this module too

    knobs = ", ".join(f"{k} = {v:g}" for k, v in config.knobs.items())
    policy = config.policy + (f" ({knobs})" if knobs else "")
    return {
        "algorithm_name": f"lam-envs behaviour policy {policy}",
        "author": {"lam-envs"},
        "minari_version": minari.__version__,
        "description": (
            f"{config.env} {config.env_kwargs_full} under policy {policy}; "
            f"{config.label_fraction:g} of {config.label_unit}s labelled. "
            "Unlabelled actions hold NaN (Box) or -1 (Discrete); infos/label_mask marks "
            "labelled steps; infos/oracle holds ground truth for evaluation only."
        ),
        "lam_envs": {
            "contract_version": CONTRACT_VERSION,
            "package_version": lam_envs.__version__,
            "collect": {**dataclasses.asdict(config), "dataset_id": dataset_id},
            "episodes_per_block": _shards.episodes_per_block(config.episode_length),
        },
    }


def _check_path_length(root: Path, dataset_id: str) -> None:
    longest = root / staging.STAGING / ("x" * 80) / "data" / "shard-00000.hdf5"
    need = max(len(str(longest).encode()), len(str(root / dataset_id / "data").encode()) + 30)
    limit = os.pathconf(root, "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096
    if need >= limit:
        raise ValueError(
            f"the dataset's path under {str(root)[:60]!r}... would be {need} bytes long; "
            f"the filesystem takes at most {limit}: choose a shorter --root or --dataset-id"
        )


def stored_bytes(config: CollectConfig, env: gym.Env) -> int:
    """Estimated bytes of the dataset on disk (arrays plus HDF5's per-episode objects)."""
    per_episode = _shards.episode_bytes(env, config.episode_length) + _OVERHEAD_PER_EPISODE
    return config.episodes * per_episode


def check_resources(config: CollectConfig, env: gym.Env, root: Path, workers: int) -> None:
    """Refuse, before any rollout, episodes so long that ``workers`` of them at once do not
    fit in memory, or a dataset larger than the free disk under ``root``."""
    per_block = _shards.episodes_per_block(config.episode_length)
    one_block = per_block * _shards.episode_bytes(env, config.episode_length)
    per_worker = 2 * max(one_block, _shards.CHUNK_BYTES)  # rollout arrays and their copies
    available = _memory_available()
    if available is not None and per_worker * workers > available:
        raise ValueError(
            f"episodes of {config.episode_length:,} steps need about {format_bytes(per_worker)} of "
            f"memory per worker ({workers} worker(s)); {format_bytes(available)} is available: "
            "use a shorter --episode-length (or fewer --workers)"
        )
    need, free = stored_bytes(config, env), shutil.disk_usage(root).free
    if need > free:
        raise ValueError(
            f"the dataset needs about {format_bytes(need)} on disk and {root} has "
            f"{format_bytes(free)} free: collect fewer transitions, or choose another --root"
        )


def _memory_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


from lam_envs.collect.cli import build_parser, main  # noqa: E402  (the CLI uses collect)
