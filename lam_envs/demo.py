"""The embedded demo (``make demo``): roll out both environments with their behaviour
policies, print what the data holds, and save a picture of grid frames.

    python -m lam_envs.demo --out outputs/demo
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import lam_envs  # noqa: F401  (registers the ids)
from lam_envs.grid import ACTION_NAMES
from lam_envs.policies import make_policy


def grid_frames(policy_name: str, steps: int, seed: int, **knobs):
    env = gym.make("GridLAM-LowNoise-v0", render_mode="rgb_array")
    policy, rng = make_policy(policy_name, env, **knobs), np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, titles = [env.render()], ["start"]
    for _ in range(steps):
        action = int(policy(obs[None], rng)[0])
        obs, reward, *_ = env.step(action)
        frames.append(env.render())
        titles.append(f"{ACTION_NAMES[action]} (r={reward:g})")
    return frames, titles


def save_grid_picture(path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        ("snaking, ε = 0.05", grid_frames("snaking", 7, seed, epsilon=0.05)),
        ("random", grid_frames("random", 7, seed)),
    ]
    fig, axes = plt.subplots(len(rows), 8, figsize=(13, 4.4))
    for (label, (frames, titles)), row in zip(rows, axes, strict=True):
        for ax, frame, title in zip(row, frames, titles, strict=True):
            ax.imshow(frame)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, fontsize=9)
    fig.suptitle("GridLAM-LowNoise-v0: the square (rows 0-2) and the noise row (amber)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rollout_summary(env_id: str, policy_name: str, num_envs: int, steps: int, **knobs):
    """Transitions/s and the variance of o' - o split into the agent's part and the rest."""
    env = gym.make_vec(env_id, num_envs=num_envs)
    policy, rng = make_policy(policy_name, env, **knobs), np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    deltas, controllable, returns = [], [], np.zeros(num_envs)
    start = time.perf_counter()
    for _ in range(steps):
        nxt, reward, _, _, info = env.step(policy(obs, rng))
        returns += reward
        if "q" in info:
            deltas.append(nxt - obs)
            controllable.append(info["q"])
        else:  # the grid: the change of the noise-free image is the controllable part
            deltas.append((nxt - obs).reshape(num_envs, -1))
            controllable.append((info["clean_obs"] - obs * _upper_mask()).reshape(num_envs, -1))
        obs = nxt
    rate = num_envs * steps / (time.perf_counter() - start)
    delta, q = np.concatenate(deltas), np.concatenate(controllable)
    share = q.var(axis=0).sum() / delta.var(axis=0).sum()
    return rate, share, returns.mean() / steps


def _upper_mask() -> np.ndarray:
    mask = np.ones((1, 1, 4, 4), dtype=np.float32)
    mask[..., 3, :] = 0
    return mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lam_envs.demo",
        description="Roll out both environments with their policies and save grid frames.",
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rollouts")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    cases = [
        ("LinearLAM-v0", "random", {}),
        ("LinearLAM-IID-v0", "random", {}),
        ("LinearLAM-OtherAgents-v0", "random", {}),
        ("LinearLAM-OtherAgentsStrong-v0", "random", {}),
        ("GridLAM-LowNoise-v0", "random", {}),
        ("GridLAM-LowNoise-v0", "snaking", {"epsilon": 0.05}),
        ("GridLAM-HighNoise-v0", "snaking", {"epsilon": 0.05}),
    ]
    print(
        f"{'environment':32} {'policy':18} {'transitions/s':>14} {'agent share':>12} {'reward':>8}"
    )
    for env_id, policy_name, knobs in cases:
        n = 4096 if env_id.startswith("Grid") else 1024
        rate, share, reward = rollout_summary(env_id, policy_name, n, 100, **knobs)
        label = policy_name + "".join(f" {k}={v}" for k, v in knobs.items())
        print(f"{env_id:32} {label:18} {rate:>14,.0f} {share:>12.2f} {reward:>8.3f}")
    print(
        "agent share: the part of Var(o' - o) that is the agent's own change "
        "(q = X a, or the square's move); the rest is noise a latent action should ignore."
    )
    picture = args.out / "grid_frames.png"
    save_grid_picture(picture, args.seed)
    print(f"saved {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
