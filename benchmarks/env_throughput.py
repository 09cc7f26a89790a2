"""Environment throughput: the native vector env against Gymnasium's own ways of batching.

For each configuration, in one run and on the same actions (random policy, drawn ahead so
only the environment is timed), transitions per second of:

- native:  ``gym.make_vec(id, num_envs=N)`` (our ``*VectorEnv``, numpy over the batch)
- sync:    ``gym.make_vec(id, num_envs=N, vectorization_mode="sync")`` (Gymnasium's
           ``SyncVectorEnv`` over N single envs)
- single:  a plain loop over one ``gym.make(id)`` env

Usage:  python benchmarks/env_throughput.py [--seconds 2] [--linear-envs 1024] [--grid-envs 4096]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import lam_envs  # noqa: F401  (registers the ids)
from lam_envs.policies import make_policy

CONFIGS = [
    ("LinearLAM other agents (d_o=128, d_b=8)", "LinearLAM-OtherAgents-v0", {"d_b": 8}),
    ("LinearLAM i.i.d. noise (d_o=128)", "LinearLAM-IID-v0", {}),
    ("GridLAM low noise", "GridLAM-LowNoise-v0", {}),
]


def _rate(step, batch: int, seconds: float) -> float:
    step()  # warm up
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            step()
        count += 10 * batch
    return count / elapsed


def vector_rate(env_id, kwargs, num_envs, mode, seconds) -> float:
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
    policy, rng = make_policy("random", env), np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    actions = [policy(obs, rng) for _ in range(64)]
    t = iter(range(1 << 62))
    return _rate(lambda: env.step(actions[next(t) % 64]), num_envs, seconds)


def single_rate(env_id, kwargs, seconds) -> float:
    env = gym.make(env_id, **kwargs)
    policy, rng = make_policy("random", env), np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    actions = list(policy(np.repeat(obs[None], 256, axis=0), rng))
    t = iter(range(1 << 62))

    def step():
        _, _, terminated, truncated, _ = env.step(actions[next(t) % 256])
        if terminated or truncated:
            env.reset()

    return _rate(step, 1, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--linear-envs", type=int, default=1024, help="N for LinearLAM")
    parser.add_argument("--grid-envs", type=int, default=4096, help="N for GridLAM")
    parser.add_argument(
        "--sync-envs", type=int, default=256, help="N for SyncVectorEnv (slow to build)"
    )
    args = parser.parse_args()

    header = (
        f"{'configuration':42} {'native':>14} {'sync':>12} {'single':>12}"
        f" {'÷sync':>7} {'÷single':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, env_id, kwargs in CONFIGS:
        n = args.grid_envs if env_id.startswith("Grid") else args.linear_envs
        native = vector_rate(env_id, kwargs, n, None, args.seconds)
        sync = vector_rate(env_id, kwargs, args.sync_envs, "sync", args.seconds)
        single = single_rate(env_id, kwargs, args.seconds)
        print(
            f"{label:42} {native:>12,.0f}/s {sync:>10,.0f}/s {single:>10,.0f}/s "
            f"{native / sync:>6.1f}x {native / single:>7.1f}x"
        )
    print(
        f"\nnative: N={args.linear_envs} (linear) / {args.grid_envs} (grid); "
        f"sync: SyncVectorEnv with N={args.sync_envs}; single: one gym.make env."
    )


if __name__ == "__main__":
    main()
