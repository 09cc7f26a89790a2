"""Environment throughput: the native vector env against Gymnasium's own ways of batching,
and (optionally) against another version of this package.

For each configuration, in one run and on the same actions (uniform random, drawn ahead so
only the environment is timed), transitions per second of:

- native:  ``gym.make_vec(id, num_envs=N)`` (our ``*VectorEnv``, numpy over the batch)
- sync:    ``gym.make_vec(id, num_envs=N, vectorization_mode="sync")`` (Gymnasium's
           ``SyncVectorEnv`` over N single envs)
- single:  a plain loop over one ``gym.make(id)`` env

With ``--baseline-src DIR`` (a folder holding another version's ``lam_envs``, e.g.
``git archive main lam_envs | tar -x -C DIR``) it also times the native env of every
configuration that version has, in fresh processes alternating between the two versions,
and prints the best of ``--repeats`` runs of each and their ratio.

Usage:  python benchmarks/env_throughput.py [--seconds 2] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np

import lam_envs  # noqa: F401  (registers the ids)

# (label, id, kwargs, which --*-envs sets N)
CONFIGS = [
    ("LinearLAM other agents (d_o=128, d_b=8)", "LinearLAM-OtherAgents-v0", {}, "linear"),
    ("LinearLAM i.i.d. noise (d_o=128)", "LinearLAM-IID-v0", {}, "linear"),
    ("GridLAM low noise (4×4)", "GridLAM-LowNoise-v0", {}, "grid"),
    ("GridLAM distracting (32×32, all four)", "GridLAM-Distracting-v0", {}, "pixel"),
]


def _rate(step, batch: int, seconds: float) -> float:
    step()  # warm up
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            step()
        count += 10 * batch
    return count / elapsed


def _actions(space: gym.spaces.Space, count: int, rng: np.random.Generator) -> list:
    """``count`` uniform random actions of ``space`` (a batch space or a single one)."""
    if isinstance(space, gym.spaces.MultiDiscrete):
        return [rng.integers(space.nvec) for _ in range(count)]
    if isinstance(space, gym.spaces.Discrete):
        return [np.int64(rng.integers(space.n)) for _ in range(count)]
    return [rng.standard_normal(space.shape).astype(np.float32) for _ in range(count)]


def vector_rate(env_id, kwargs, num_envs, mode, seconds) -> float:
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
    env.reset(seed=0)
    actions = _actions(env.action_space, 64, np.random.default_rng(0))
    t = iter(range(1 << 62))
    return _rate(lambda: env.step(actions[next(t) % 64]), num_envs, seconds)


def single_rate(env_id, kwargs, seconds) -> float:
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    actions = _actions(env.action_space, 256, np.random.default_rng(0))
    t = iter(range(1 << 62))

    def step():
        _, _, terminated, truncated, _ = env.step(actions[next(t) % 256])
        if terminated or truncated:
            env.reset()

    return _rate(step, 1, seconds)


def _native_in_process(env_id: str, num_envs: int, seconds: float, src: str | None) -> float:
    """The native rate measured in a fresh process, importing lam_envs from ``src``
    (``None``: this checkout); NaN when that version lacks the id."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, __file__, "--native-rate", env_id, str(num_envs), str(seconds)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return float("nan")


def compare_versions(configs, sizes, seconds: float, src: str, repeats: int) -> None:
    print(f"\nnative env, this checkout vs baseline {src!r}: best of {repeats} alternating runs")
    header = f"{'configuration':42} {'this':>14} {'baseline':>14} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for label, env_id, _kwargs, kind in configs:
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(_native_in_process(env_id, sizes[kind], seconds, None))
            theirs.append(_native_in_process(env_id, sizes[kind], seconds, src))
        best, base = max(ours), max(theirs)
        if np.isnan(base):
            print(f"{label:42} {best:>12,.0f}/s {'(absent)':>14}")
            continue
        print(f"{label:42} {best:>12,.0f}/s {base:>12,.0f}/s {best / base:>6.2f}x")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--native-rate":  # one measurement, see above
        env_id, num_envs, seconds = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        print(vector_rate(env_id, {}, num_envs, None, seconds) if env_id in gym.registry else "")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--linear-envs", type=int, default=1024, help="N for LinearLAM")
    parser.add_argument("--grid-envs", type=int, default=4096, help="N for the 4×4 GridLAM")
    parser.add_argument(
        "--pixel-envs", type=int, default=512, help="N for the 32×32 distracting GridLAM"
    )
    parser.add_argument(
        "--sync-envs", type=int, default=256, help="N for SyncVectorEnv (slow to build)"
    )
    parser.add_argument(
        "--baseline-src", metavar="DIR", help="another version's lam_envs to compare with"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per version (baseline)")
    args = parser.parse_args()
    sizes = {"linear": args.linear_envs, "grid": args.grid_envs, "pixel": args.pixel_envs}

    print(f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    header = (
        f"{'configuration':42} {'native':>14} {'sync':>12} {'single':>12}"
        f" {'÷sync':>7} {'÷single':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, env_id, kwargs, kind in CONFIGS:
        native = vector_rate(env_id, kwargs, sizes[kind], None, args.seconds)
        sync = vector_rate(env_id, kwargs, args.sync_envs, "sync", args.seconds)
        single = single_rate(env_id, kwargs, args.seconds)
        print(
            f"{label:42} {native:>12,.0f}/s {sync:>10,.0f}/s {single:>10,.0f}/s "
            f"{native / sync:>6.1f}x {native / single:>7.1f}x"
        )
    print(
        f"\nnative: N={args.linear_envs} (linear) / {args.grid_envs} (4×4 grid) / "
        f"{args.pixel_envs} (32×32 grid); sync: SyncVectorEnv with N={args.sync_envs}; "
        "single: one gym.make env."
    )
    if args.baseline_src:
        compare_versions(CONFIGS, sizes, args.seconds, args.baseline_src, args.repeats)
    print(f"load average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
