"""Stage 5 of the pipeline: how well policies act, on held-out data and in the environment.

- :func:`agreement`: the share of the behaviour policy's held-out actions a policy matches
  (grid), or 1 − nmse(a) (linear environment).
- :func:`rollout_returns`: mean episode return in the dataset's own environment.
- :func:`evaluate_policies`: both, for several named policies of M copies each.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lam_models.data import LAMDataset
from lam_models.lams.training import progress_bar
from lam_models.pipeline.bc import Policy

__all__ = ["agreement", "composed", "evaluate_policies", "rollout_returns"]


def agreement(actions: np.ndarray, truth: np.ndarray, discrete: bool) -> np.ndarray:
    """Per copy: share of the behaviour policy's actions matched (grid), or 1 − nmse(a).

    actions: (M, N) or (M, N, d_a) predictions; truth: (N,)/(N, d_a) or per copy (M, N, ...).
    """
    truth = np.broadcast_to(truth, actions.shape)
    if discrete:
        return (actions == truth).mean(1)
    variance = truth.var(1).sum(-1)
    return 1 - np.square(actions - truth).sum(-1).mean(1) / variance


def rollout_returns(
    data: LAMDataset,
    act: Callable[[np.ndarray], np.ndarray],
    num_copies: int,
    episodes: int,
    seed: int,
    progress: bool = False,
    name: str = "rollout",
) -> np.ndarray:
    """Mean episode return of M policies in the dataset's environment, (M,).

    All M × ``episodes`` environments step together in one native vector env made from the
    dataset's environment spec (:meth:`LAMDataset.make_vector_env`: refused unless lam_envs
    registers it or the dataset is trusted) with its episode length. ``act(obs)`` maps
    observations (M, episodes, *obs_shape) to actions (M, episodes[, d_a]).
    """
    length = data.episode_length
    env = data.make_vector_env(num_copies * episodes, max_episode_steps=length)
    obs, _ = env.reset(seed=seed)
    total = np.zeros(num_copies * episodes)
    bar = progress_bar(length, f"{name}, {num_copies * episodes} episodes", "step", progress)
    for _ in range(length):
        action = np.asarray(act(obs.reshape(num_copies, episodes, *obs.shape[1:])))
        obs, reward, _, _, _ = env.step(action.reshape(num_copies * episodes, *action.shape[2:]))
        total += reward
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    env.close()
    return total.reshape(num_copies, episodes).mean(1)


def composed(latent_policy: Policy, decoder: Policy) -> Callable[[torch.Tensor], torch.Tensor]:
    """The composed policy a = decoder(π(o)), on flattened observations (M, N, d_o)."""
    return lambda obs: decoder.act(latent_policy(obs))


def evaluate_policies(
    data: LAMDataset,
    policies: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    test_obs: torch.Tensor,
    test_actions: np.ndarray,
    episodes: int,
    seed: int,
    progress: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """For each named policy (flattened observations (M, N, d_o) -> actions (M, N[, d_a])),
    its agreement on the held-out transitions and its mean return in the environment, (M,)."""
    results = {}
    for name, act in policies.items():
        predicted = act(test_obs).cpu().numpy()
        m = predicted.shape[0]

        def act_env(obs: np.ndarray, act=act) -> np.ndarray:
            return act(torch.from_numpy(obs).float().flatten(2)).cpu().numpy()

        results[name] = {
            "agreement": agreement(predicted, test_actions, data.discrete),
            "return": rollout_returns(data, act_env, m, episodes, seed, progress, name),
        }
    return results
