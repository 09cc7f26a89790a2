"""Dataset collection throughput: ``lam_envs.collect`` against Minari's ``DataCollector``.

For each configuration, in one run, end-to-end transitions per second written to disk by

- ours:    ``lam_envs.collect.collect(CollectConfig(...), root=tmp)`` (native vector env,
           chunked HDF5 writes, partial labels and oracle infos included)
- minari:  ``minari.DataCollector(gym.make(id), record_infos=True)`` stepped one env at a
           time in a Python loop with the same policy (called on ``obs[None]``), then
           ``create_dataset`` (Minari's documented way of making a dataset)

on the same environment, policy and episode length (200 steps). Both write the env's
infos. The timed span includes environment creation and the final dataset on disk.

Then our collector in parallel, same data (the arrays do not depend on the number of
workers): ``collect(..., workers=1)`` against ``workers=2`` (two processes writing two
shards), and Ray with 2 CPUs (``ray.init(num_cpus=2)`` done before the clock starts, its
time printed apart), each end to end, with the ratios. On a 2-core machine the targets
are 2 workers >= 1.6x one worker and Ray within 20% of 2 workers.

Then the peak memory (max RSS) of our collector at two dataset sizes, each in a fresh
subprocess, to show that it does not grow with the number of transitions: of the
process itself with one worker, and of each worker process with two.

Minari's ``DataCollector`` needs ``minari[create]`` (it imports jax); without it the
baseline is reported as missing and only our rates are measured.

Usage:  python benchmarks/collect_throughput.py [--quick] [--no-memory] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import lam_envs  # noqa: F401  (registers the ids)
from lam_envs.collect import CollectConfig, collect
from lam_envs.policies import make_policy

EPISODE_LENGTH = 200


@dataclass(frozen=True)
class Case:
    name: str
    env: str
    preset: str
    env_kwargs: dict[str, Any]
    policy: str
    knobs: dict[str, float] = field(default_factory=dict)
    ours_episodes: int = 5000  # full run; --quick divides
    minari_episodes: int = 100

    def config(self, episodes: int, dataset_id: str) -> CollectConfig:
        return CollectConfig(
            env=self.env,
            preset=self.preset,
            env_kwargs=self.env_kwargs,
            policy=self.policy,
            episodes=episodes,
            episode_length=EPISODE_LENGTH,
            seed=0,
            dataset_id=dataset_id,
            **self.knobs,
        )


CASES = [
    Case(
        "LinearLAM other agents (d_o=128, d_b=8)",
        "LinearLAM-v0",
        "other_agents",
        {"d_o": 128, "d_b": 8},
        "random",
        ours_episodes=5000,  # 1,000,000 transitions
        minari_episodes=400,  # ~10-20 s
    ),
    Case(
        "GridLAM low noise",
        "GridLAM-v0",
        "low",
        {},
        "snaking",
        {"epsilon": 0.05},
        ours_episodes=5000,
        minari_episodes=320,
    ),
]


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


@dataclass
class Timing:
    transitions: int
    wall: float  # seconds
    cpu: float  # CPU seconds of this process (user + system): less sensitive to other load
    bytes: int  # on disk
    all_cpu: float = 0.0  # CPU seconds of this process and its worker processes

    @property
    def rate(self) -> float:
        return self.transitions / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.transitions / self.cpu


def _children_cpu() -> float:
    """CPU seconds of this process's finished child processes (worker processes)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Clock:
    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.children = _children_cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        self.children = _children_cpu() - self.children


def run_ours(
    case: Case, episodes: int, root: Path, workers: int | None = 1, ray: str | None = None
) -> Timing:
    """Our collector, end to end (env creation to the published dataset). ``cpu`` is this
    process's only: with workers it leaves out theirs."""
    config = case.config(episodes, "bench/ours-v0")
    with Clock() as clock:
        summary = collect(config, root=root, progress=False, workers=workers, ray=ray)
    timing = Timing(summary.transitions, clock.wall, clock.cpu, dir_bytes(summary.path))
    timing.all_cpu = clock.cpu + clock.children  # with worker processes (not Ray's)
    return timing


def minari_available() -> str | None:
    """None if Minari's DataCollector can run here, else why not."""
    try:
        import jax.tree_util  # noqa: F401
    except ImportError:
        return 'needs minari[create] (jax): pip install "minari[create]"'
    return None


def run_minari(case: Case, episodes: int, root: Path) -> Timing:
    """Minari's DataCollector, end to end (env creation to create_dataset)."""
    import minari

    os.environ["MINARI_DATASETS_PATH"] = str(root)  # DataCollector and create_dataset read it
    clock = Clock().__enter__()
    env = minari.DataCollector(
        gym.make(
            case.env,
            max_episode_steps=EPISODE_LENGTH,
            preset=case.preset,
            **case.env_kwargs,
        ),
        record_infos=True,
    )
    policy = make_policy(case.policy, env, **case.knobs)
    rng = np.random.default_rng(0)
    transitions = 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            action = policy(obs[None], rng)[0]
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            transitions += 1
    with warnings.catch_warnings():  # "eval_env is None": the collecting env is meant
        warnings.simplefilter("ignore", UserWarning)
        dataset = env.create_dataset(dataset_id="bench/minari-v0", algorithm_name=case.policy)
    clock.__exit__()
    env.close()
    assert dataset.total_steps == transitions == episodes * EPISODE_LENGTH
    return Timing(transitions, clock.wall, clock.cpu, dir_bytes(root / "bench" / "minari-v0"))


def profile_ours(case: Case, episodes: int, tmp: Path) -> None:
    """cProfile of one run of our collector: where the time goes."""
    import cProfile
    import pstats

    root = tmp / "profile"
    profiler = cProfile.Profile()
    profiler.enable()
    run_ours(case, episodes, root)
    profiler.disable()
    shutil.rmtree(root, ignore_errors=True)
    print(f"\ncProfile of our collector, {case.name}, {episodes * EPISODE_LENGTH:,} transitions:")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)


# ---------------------------------------------------------------- peak memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_child(case_index: int, episodes: int, root: str, workers: int) -> None:
    """Runs in a fresh interpreter (Linux): RSS after imports and the peak RSS while
    collecting. Writing 5 to /proc/self/clear_refs resets the peak (VmHWM) to the current
    RSS, so the peak is that of the collection, not of importing torch or Minari. With
    workers, the largest peak RSS among them (getrusage of the waited-for children)."""
    import resource

    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    timing = run_ours(CASES[case_index], episodes, Path(root), workers=workers)
    peak = _status_kib("VmHWM")
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "before_kib": before,
                "peak_kib": peak,
                "worker_peak_kib": worker_peak,
                "transitions": timing.transitions,
            }
        )
    )


def measure_memory(case_index: int, episodes: int, tmp: Path, workers: int = 1) -> dict[str, int]:
    root = tmp / f"memory-{episodes}-{workers}"
    args = [str(case_index), str(episodes), str(root), str(workers)]
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- main


def print_rows(title: str, header: str, rows: list[tuple[Case, list[str]]]) -> None:
    """A table: the title, a header and its rule, then each configuration's cells."""
    print(title)
    header = f"{'configuration':41} {header}"
    print(header)
    print("-" * len(header))
    for case, cells in rows:
        print(f"{case.name:41} " + " ".join(cells))


def throughput_cells(ours: Timing, theirs: Timing | None) -> list[str]:
    cells = [f"{ours.transitions:>11,}", f"{ours.rate:>9,.0f} [{ours.cpu_rate:>8,.0f}]"]
    if theirs is None:
        return [*cells, f"{'':>11}", f"{'n/a':>18}", f"{'n/a':>13}"]
    return [
        *cells,
        f"{theirs.transitions:>11,}",
        f"{theirs.rate:>7,.0f} [{theirs.cpu_rate:>8,.0f}]",
        f"{ours.rate / theirs.rate:>4,.0f}x [{ours.cpu_rate / theirs.cpu_rate:>4,.0f}x]",
    ]


def print_table(rows: list[tuple[Case, Timing, Timing | None]]) -> None:
    print_rows(
        "\ntransitions/s, end to end (wall clock; per CPU-second of this process in brackets)",
        f"{'transitions':>11} {'ours':>20} {'transitions':>11} {'minari':>18} {'ratio':>13}",
        [(case, throughput_cells(ours, theirs)) for case, ours, theirs in rows],
    )
    print()
    for case, ours, theirs in rows:
        line = f"  {case.name}: ours {ours.wall:.1f} s"
        if theirs is not None:
            line += f", minari {theirs.wall:.1f} s"
        line += f"; bytes/transition on disk: ours {ours.bytes / ours.transitions:,.0f}"
        if theirs is not None:
            line += f", minari {theirs.bytes / theirs.transitions:,.0f}"
        print(line)


# ---------------------------------------------------------------- parallel


def measure_parallel(case: Case, episodes: int, tmp: Path) -> dict[str, Timing]:
    """One worker against two, on the same data."""
    timings = {}
    for workers in (1, 2):
        root = tmp / f"workers-{workers}"
        timings[f"{workers} worker" + "s" * (workers > 1)] = run_ours(case, episodes, root, workers)
        shutil.rmtree(root)
    return timings


def measure_ray(parallel: list[tuple[Case, dict[str, Timing]]], scale: int, tmp: Path) -> str:
    """Ray with 2 CPUs, started once before the clocks; returns a note on Ray's start."""
    try:
        import ray
    except ImportError:
        for _, timings in parallel:
            timings["Ray, 2 CPUs"] = None
        return "Ray not measured: pip install 'lam-envs[ray]'"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with Clock() as start:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for i, (case, timings) in enumerate(parallel):
            root = tmp / f"ray-{i}"
            episodes = max(1, case.ours_episodes // scale)
            timings["Ray, 2 CPUs"] = run_ours(case, episodes, root, workers=None, ray="")
            shutil.rmtree(root)
            print(f"  measured {case.name} on Ray", file=sys.stderr)
    finally:
        ray.shutdown()
    return f"ray.init(num_cpus=2) took {start.wall:.1f} s, not counted above"


def parallel_cells(t: dict[str, Timing | None]) -> list[str]:
    one, two, on_ray = t["1 worker"], t["2 workers"], t.get("Ray, 2 CPUs")
    cells = [f"{one.rate:>10,.0f}", f"{two.rate:>10,.0f}", f"{two.rate / one.rate:>5.2f}x"]
    if on_ray is None:
        return [*cells, f"{'n/a':>12}", f"{'n/a':>13}"]
    return [*cells, f"{on_ray.rate:>12,.0f}", f"{on_ray.rate / two.rate - 1:>+12.0%}"]


def print_parallel(parallel: list[tuple[Case, dict[str, Timing]]], ray_note: str | None) -> None:
    print_rows(
        "\nin parallel, transitions/s end to end (same data; targets: 2 workers >= 1.6x one,\n"
        "Ray within 20% of 2 workers)",
        f"{'1 worker':>10} {'2 workers':>10} {'ratio':>6} {'Ray, 2 CPUs':>12} {'vs 2 workers':>13}",
        [(case, parallel_cells(t)) for case, t in parallel],
    )
    print("\nCPU seconds of all our processes (less sensitive to other load than the rates):")
    for case, t in parallel:
        one, two = t["1 worker"], t["2 workers"]
        print(
            f"  {case.name}: 1 worker {one.all_cpu:.1f} s, 2 workers {two.all_cpu:.1f} s "
            f"({two.all_cpu / one.all_cpu - 1:+.0%}: imports of the workers, the links)"
        )
    if ray_note:
        print(f"  {ray_note}")


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--no-minari", action="store_true", help="skip Minari's DataCollector")
    p.add_argument(
        "--profile", action="store_true", help="also cProfile our collector (first config)"
    )
    p.add_argument("--no-parallel", action="store_true", help="skip workers 1 vs 2 and Ray")
    p.add_argument("--no-ray", action="store_true", help="skip Ray (needs lam-envs[ray])")
    p.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        case_index, episodes, root, workers = args.memory_child
        memory_child(int(case_index), int(episodes), root, int(workers))
        return 0

    scale = 50 if args.quick else 1
    why_no_minari = "skipped (--no-minari)" if args.no_minari else minari_available()
    load = os.getloadavg()
    print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
        f"episodes of {EPISODE_LENGTH} steps{'; --quick sizes' if args.quick else ''}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="lam-collect-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for i, case in enumerate(CASES):
            ours_root, minari_root = tmp / f"ours-{i}", tmp / f"minari-{i}"
            ours = run_ours(case, max(1, case.ours_episodes // scale), ours_root)
            shutil.rmtree(ours_root)
            theirs = None
            if why_no_minari is None:
                theirs = run_minari(case, max(1, case.minari_episodes // scale), minari_root)
                shutil.rmtree(minari_root)
            rows.append((case, ours, theirs))
            print(f"  measured {case.name}", file=sys.stderr)

        print_table(rows)
        if why_no_minari is not None:
            print(f"minari DataCollector not measured: {why_no_minari}")

        if not args.no_parallel:
            parallel = []
            for i, case in enumerate(CASES):
                episodes = max(1, case.ours_episodes // scale)
                parallel.append((case, measure_parallel(case, episodes, tmp / f"par-{i}")))
                print(f"  measured {case.name} in parallel", file=sys.stderr)
            ray_note = None
            if not args.no_ray:
                ray_note = measure_ray(parallel, scale, tmp)
            print_parallel(parallel, ray_note)

        if not args.no_memory:
            small = 50 if args.quick else 500
            sizes = (small, small * 10)
            print(f"\npeak memory of our collector, {CASES[0].name}, fresh process each:")
            for episodes in sizes:
                m = measure_memory(0, episodes, tmp)
                w = measure_memory(0, episodes, tmp, workers=2)
                print(
                    f"  {m['transitions']:>12,} transitions: peak RSS {_mib(m['peak_kib']):>9} "
                    f"(after imports {_mib(m['before_kib'])}, "
                    f"growth while collecting {_mib(m['peak_kib'] - m['before_kib'])}); "
                    f"with 2 workers, each worker {_mib(w['worker_peak_kib'])}"
                )
        if args.profile:
            profile_ours(CASES[0], max(1, CASES[0].ours_episodes // scale // 5), tmp)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
