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
under ``infos/oracle``, for evaluation only. See the README's "Dataset contract".

What to collect is a ``CollectConfig`` (``lam_envs.collect.config``, validated there).
Work is cut into blocks of episodes whose randomness depends only on the seed and the
block (``lam_envs.collect.shards``), so N worker processes (``--workers``) or Ray tasks
(``--ray``, ``lam_envs.collect.workers``) write N shard files of the same data that one process
would write; ``lam_envs.collect.writer`` links them into one Minari dataset, and
``lam_envs.utils.staging`` publishes it atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

import lam_envs
from lam_envs.collect import shards as _shards
from lam_envs.collect.config import (
    KNOB_DEFAULTS,
    LABEL_UNITS,
    NAMESPACE,
    CollectConfig,
    check_count,
)
from lam_envs.collect.workers import Job, WorkerError, ray_session, run_processes, run_ray
from lam_envs.collect.writer import DatasetStaging, check_target
from lam_envs.dataset.contract import CONTRACT_VERSION
from lam_envs.policies import POLICIES
from lam_envs.utils import cli, staging
from lam_envs.utils.cli import Parser, parse_value
from lam_envs.utils.outputs import DiskFull, check_path, disk_full, format_bytes

__all__ = ["CollectConfig", "CollectSummary", "collect", "default_root", "main"]

_OVERHEAD_PER_EPISODE = 6000  # bytes of HDF5 objects and links per episode (measured 6-7 kB)


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
            cli.progress(
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
        idle = lambda: next(links, None)  # noqa: E731  (links are made while workers run)
        if ray is not None:
            results = run_ray(config, jobs, bar.update, stop.check, idle)
            how = f"{len(jobs)} Ray task(s)"
        elif len(jobs) > 1:
            results = run_processes(config, jobs, bar.update, stop.check, idle)
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


# ---------------------------------------------------------------- command line


def _integer_text(text: str) -> int | float:
    """A count on the command line: '1000', '1_000', '1e6' (checked as an integer later)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def build_parser() -> argparse.ArgumentParser:
    d = CollectConfig()
    p = Parser(
        prog="python -m lam_envs.collect",
        description="Collect a Minari dataset (HDF5) with partial action labels from a "
        "lam-envs environment under a behaviour policy. See the README's dataset contract.",
        argument_default=argparse.SUPPRESS,  # so that only flags given override a recipe
    )
    p.add_argument(
        "--env", help=f"environment id (default {d.env}): " + ", ".join(lam_envs.ENV_IDS)
    )
    p.add_argument(
        "--preset",
        help="environment preset: none/low/high (grid); iid, other_agents, "
        "other_agents_strong (linear) (default: none given, the environment's defaults)",
    )
    p.add_argument(
        "--env-kwarg",
        "-k",
        action="append",
        metavar="KEY=VALUE",
        help="environment parameter, repeatable (e.g. -k sigma_exo=2.0 -k d_b=4) (default: none)",
    )
    p.add_argument(
        "--policy", help=f"behaviour policy (default {d.policy}): " + ", ".join(POLICIES)
    )
    p.add_argument(
        "--epsilon",
        type=float,
        help="snaking, snaking-released: probability of a random action (default "
        f"{KNOB_DEFAULTS['epsilon']}, the published correlated policy)",
    )
    p.add_argument(
        "--chi",
        type=float,
        help=f"linear: determinism χ, 0 random, 1 a = Π o (default {KNOB_DEFAULTS['chi']})",
    )
    p.add_argument(
        "--episodes", type=_integer_text, help=f"number of episodes (default {d.episodes})"
    )
    p.add_argument(
        "--episode-length",
        type=_integer_text,
        help=f"steps per episode (default {d.episode_length})",
    )
    p.add_argument(
        "--transitions",
        type=_integer_text,
        help="total transitions instead of --episodes, e.g. 1e6; rounded up to whole "
        "episodes (default: episodes x episode length)",
    )
    p.add_argument(
        "--seed", type=_integer_text, help=f"seed of rollouts and labels (default {d.seed})"
    )
    p.add_argument(
        "--label-fraction",
        type=float,
        help=f"λ, the share of labelled units, in [0, 1] (default {d.label_fraction})",
    )
    p.add_argument(
        "--label-unit",
        choices=LABEL_UNITS,
        help=f"label single transitions or whole episodes (default {d.label_unit})",
    )
    p.add_argument(
        "--full-labels",
        action="store_true",
        help="keep every action (for libraries that cannot handle missing ones); "
        "infos/label_mask still marks the λ subset (default: off)",
    )
    p.add_argument(
        "--dataset-id",
        help=f"Minari id, namespace/name-vN (default: from the flags, {NAMESPACE}/...)",
    )
    p.add_argument(
        "--root",
        help="output root (default: $MINARI_DATASETS_PATH if set, else ~/.minari/datasets; "
        "here: " + os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets") + ")",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset (default: off)"
    )
    p.add_argument(
        "--workers",
        type=_integer_text,
        help="processes writing shards in parallel (default: the CPU cores here, "
        f"{usable_cpus()}, capped by the work: one per {_shards.BLOCK_TRANSITIONS:,} "
        "transitions); the data does not depend on it",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run the shards as Ray tasks (pip install 'lam-envs[ray]'): no ADDRESS starts "
        "Ray here (or joins $RAY_ADDRESS), 'auto' joins this machine's cluster; --root "
        "must be a path every node sees (default: no Ray)",
    )
    p.add_argument(
        "--recipe",
        type=Path,
        nargs="+",
        help="TOML recipe(s) from datasets/, built in turn; flags given override them "
        "(default: none, the flags alone)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress display (default: a bar on a terminal, a line per 10%% otherwise)",
    )
    p.add_argument(
        "--clean",
        action="store_true",
        help="only remove the staging folders that killed runs left under the root, "
        "and list what remains (runs of live processes are never touched) (default: off)",
    )
    return p


_RUN_OPTIONS = ("root", "overwrite", "quiet", "clean", "workers", "ray")


def configs_from_args(args: argparse.Namespace) -> list[CollectConfig]:
    """One config per recipe (or one from the flags alone); flags given override recipes."""
    given = {k: v for k, v in vars(args).items() if k not in _RUN_OPTIONS}
    recipes = given.pop("recipe", None)
    if "env_kwarg" in given:
        kwargs = {}
        for item in given.pop("env_kwarg"):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--env-kwarg expects KEY=VALUE, got {item!r}")
            kwargs[key] = parse_value(value)
        given["env_kwargs"] = kwargs
    if "episodes" in given and "transitions" in given:
        raise ValueError("give --episodes or --transitions, not both")
    if recipes is None:
        return [CollectConfig(**given)]
    if len(recipes) > 1 and "dataset_id" in given:
        raise ValueError("--dataset-id names one dataset; it cannot apply to several recipes")
    return [CollectConfig.from_recipe(recipe, **given) for recipe in recipes]


def clean_root(root: Path) -> int:
    """``--clean``: remove stale staging folders under ``root`` and say what is left."""
    found = staging.clean(root)
    for path, status in found:
        if status.startswith("stuck"):  # reported, not counted: it is still there
            print(f"kept      {path} (stale, but cannot be removed: {status[7:]})")
        else:
            print(f"{status:9} {path}")
    for path in staging.unpublished(root):
        print(f"kept      {path} (a dataset whose publishing was refused; delete it by hand)")
    removed = sum(status == "removed" for _, status in found)
    print(f"removed {removed} stale staging folder(s) under {root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ray = getattr(args, "ray", None)
    try:
        root = _root(getattr(args, "root", None))
        if getattr(args, "clean", False):
            return clean_root(root)
        overwrite = getattr(args, "overwrite", False)
        configs = configs_from_args(args)
        for config in configs:  # every refusal before the first rollout
            check_target(root, config.dataset_id or config.default_dataset_id(), overwrite)
        for config in configs:
            dataset_id = config.dataset_id or config.default_dataset_id()
            print(f"collecting {dataset_id}: {config.describe()}", flush=True)
            summary = collect(
                config,
                root,
                overwrite=overwrite,
                progress=not getattr(args, "quiet", False),
                workers=getattr(args, "workers", None),
                ray=ray,
            )
            print(summary)
            hint = "" if getattr(args, "root", None) is None else f"MINARI_DATASETS_PATH={root} "
            load = f"import minari; minari.load_dataset('{summary.dataset_id}')"
            print(f'  load with    {hint}python -c "{load}"')
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (WorkerError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the dataset being written was removed", file=sys.stderr)
        return 130
    return 0
