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
from lam_envs.envs.grid import ACTION_NAMES
from lam_envs.policies import make_policy


def grid_frames(env_id: str, policy_name: str, steps: int, seed: int, **knobs):
    env = gym.make(env_id, render_mode="rgb_array")
    policy, rng = make_policy(policy_name, env, **knobs), np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    frames, titles = [env.render()], ["start"]
    for _ in range(steps):
        batch_info = {key: value[None] for key, value in info.items()}
        action = int(policy(obs[None], rng, batch_info)[0])
        obs, reward, _, _, info = env.step(action)
        frames.append(env.render())
        titles.append(f"{ACTION_NAMES[action]} (r={reward:g})")
    return frames, titles


def save_grid_picture(path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        ("snaking, ε = 0.05", grid_frames("GridLAM-LowNoise-v0", "snaking", 7, seed, epsilon=0.05)),
        ("random", grid_frames("GridLAM-LowNoise-v0", "random", 7, seed)),
        (
            "GridLAM-Distracting-v0\nsnaking, ε = 0.05",
            grid_frames("GridLAM-Distracting-v0", "snaking", 7, seed, epsilon=0.05),
        ),
    ]
    fig, axes = plt.subplots(len(rows), 8, figsize=(13, 6.6))
    for (label, (frames, titles)), row in zip(rows, axes, strict=True):
        for ax, frame, title in zip(row, frames, titles, strict=True):
            ax.imshow(frame)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, fontsize=9)
    fig.suptitle(
        "GridLAM-LowNoise-v0: the square (rows 0-2) and the noise row (amber); "
        "GridLAM-Distracting-v0: 32×32, other agents, background, shake, colour drift"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rollout_summary(env_id: str, policy_name: str, num_envs: int, steps: int, **knobs):
    """Transitions/s, the share of Var(o' - o) that is the agent's own change (q = X a, or
    the change of the grid's noise-free image ``clean_obs``; NaN on a grid with
    distractors, where the agent's pixels mix with theirs and the split is not additive),
    and the mean reward."""
    env = gym.make_vec(env_id, num_envs=num_envs)
    policy, rng = make_policy(policy_name, env, **knobs), np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    moments = {"delta": _Moments(), "agent": _Moments()}
    returns, elapsed = np.zeros(num_envs), 0.0
    for _ in range(steps):
        start = time.perf_counter()  # time the policy and the env, not the bookkeeping
        nxt, reward, _, _, new_info = env.step(policy(obs, rng, info))
        elapsed += time.perf_counter() - start
        returns += reward
        agent = new_info["q"] if "q" in new_info else new_info["clean_obs"] - info["clean_obs"]
        moments["delta"].add((nxt - obs).reshape(num_envs, -1))
        moments["agent"].add(agent.reshape(num_envs, -1))
        obs, info = nxt, new_info
    rate = num_envs * steps / elapsed
    share = moments["agent"].variance() / moments["delta"].variance()
    if getattr(env.unwrapped.config, "distractors", ()):
        share = float("nan")
    return rate, share, returns.mean() / steps


class _Moments:
    """Running sums for the total variance over features of a stream of (n, d) batches."""

    def __init__(self):
        self.n, self.sum, self.squares = 0, 0.0, 0.0

    def add(self, batch: np.ndarray) -> None:
        batch = batch.astype(np.float64)
        self.n += len(batch)
        self.sum = self.sum + batch.sum(axis=0)
        self.squares = self.squares + (batch**2).sum(axis=0)

    def variance(self) -> float:
        mean = self.sum / self.n
        return float((self.squares / self.n - mean**2).sum())


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
        ("GridLAM-Distracting-v0", "snaking", {"epsilon": 0.05}),
    ]
    print(
        f"{'environment':32} {'policy':18} {'transitions/s':>14} {'agent share':>12} {'reward':>8}"
    )
    for env_id, policy_name, knobs in cases:
        n = 512 if env_id == "GridLAM-Distracting-v0" else 4096 if "Grid" in env_id else 1024
        rate, share, reward = rollout_summary(env_id, policy_name, n, 100, **knobs)
        label = policy_name + "".join(f" {k}={v}" for k, v in knobs.items())
        shown = "—" if np.isnan(share) else f"{share:.2f}"
        print(f"{env_id:32} {label:18} {rate:>14,.0f} {shown:>12} {reward:>8.3f}")
    print(
        "agent share: the part of Var(o' - o) that is the agent's own change "
        "(q = X a, or the square's move); the rest is noise or distractors a latent action "
        "should ignore."
    )
    picture = args.out / "grid_frames.png"
    save_grid_picture(picture, args.seed)
    print(f"saved {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
