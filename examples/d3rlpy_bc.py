"""Behaviour cloning with d3rlpy on a lam-envs dataset, evaluated in the dataset's own
environment.

    # d3rlpy 2.8.1 pins gymnasium==1.0.0: give it a venv of its own (docs/integrations.md)
    python -m lam_envs.collect --policy snaking --epsilon 0.05 --full-labels \\
        --dataset-id lam_envs/snaking-full-v0
    python examples/d3rlpy_bc.py --dataset lam_envs/snaking-full-v0            # every action
    python examples/d3rlpy_bc.py --dataset lam_envs/snaking-full-v0 --subset labelled
    python examples/d3rlpy_bc.py --quick          # collects a small dataset in a temp folder

What it does:

1. Reads the transitions with ``lam_models.data.LAMDataset`` and builds d3rlpy's
   ``MDPDataset`` from them, episode by episode (observations o_0 … o_{L-1}, actions,
   rewards, terminations, truncations as timeouts). ``--subset all`` (the default) clones
   every action, so the dataset must keep them (``--full-labels``): d3rlpy knows nothing of
   our sentinels, and its ``DiscreteBC`` raises on -1 while ``BC`` trains on NaN without a
   word, so a dataset that hides actions is refused here. ``--subset labelled`` keeps only
   the transitions whose ``label_mask`` is set, each as a one-step episode (behaviour
   cloning needs no successor), and works on any dataset: the LAPO baseline "BC on the
   labelled subset".
   (``d3rlpy.datasets.get_minari`` is not used: it pairs each episode's L+1 observations
   with its L actions, so d3rlpy's episodes come out shifted, and it creates the
   environment from the metadata's entry point unchecked.)
2. Fits ``DiscreteBC`` (GridLAM, 5 actions) or ``BC`` (LinearLAM) for ``--steps`` updates.
   Observations are flattened (GridLAM's 1×4×4 image to 16 numbers), so d3rlpy's vector
   encoder applies.
3. Rolls the policy out in ``LAMDataset.recover_environment()`` (the dataset's parameters
   and episode length; refused if the metadata names an environment lam_envs does not
   register) and prints its mean return beside a uniformly random policy and the
   behaviour policy's mean return in the data.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np

from lam_models.data import LAMDataset


def mdp_arrays(data: LAMDataset, subset: str) -> dict[str, np.ndarray]:
    """The arrays d3rlpy's MDPDataset takes, observations flattened.

    d3rlpy stores an episode as rows of (observation, action, reward) and makes a transition
    of each row and the next one; an episode ending in a timeout drops its last row's
    action. So each run of consecutive transitions (a whole episode for ``all``, a single
    labelled transition for ``labelled``) becomes its observations, then its final
    next observation as an extra row, with a timeout there: d3rlpy then sees exactly our
    transitions, successors included.
    """
    learn, outcomes = data.read_numpy(), data.outcomes()
    if outcomes["terminated"].any():  # lam-envs episodes end by the time limit only
        raise SystemExit("error: this example expects episodes that end by truncation")
    n, length = len(learn["obs"]), data.episode_length
    if subset == "labelled":
        keep = np.flatnonzero(learn["label_mask"])
        if not len(keep):
            raise SystemExit(f"error: dataset {data.dataset_id!r} has no labelled transition")
        runs = keep[:, None]  # one transition per run
    else:
        if not data.collect_config.get("full_labels"):
            raise SystemExit(
                f"error: dataset {data.dataset_id!r} hides unlabelled actions (NaN / -1), "
                "which d3rlpy would take for actions; collect it with --full-labels, or "
                "pass --subset labelled"
            )
        runs = np.arange(n).reshape(-1, length)  # one episode per run
    k = runs.shape[1]
    rows = {  # (runs, k + 1, ...): the run's transitions, then the successor row
        "observations": np.concatenate([learn["obs"][runs], learn["next_obs"][runs[:, -1:]]], 1),
        "actions": np.concatenate([learn["actions"][runs], learn["actions"][runs[:, -1:]]], 1),
        "rewards": np.pad(outcomes["reward"][runs], ((0, 0), (0, 1))).astype(np.float32),
    }
    timeouts = np.zeros((len(runs), k + 1), dtype=np.float32)
    timeouts[:, -1] = 1
    total = len(runs) * (k + 1)
    return {
        "observations": rows["observations"].reshape(total, -1).astype(np.float32),
        "actions": rows["actions"].reshape(total, *learn["actions"].shape[1:]),
        "rewards": rows["rewards"].reshape(total),
        "terminals": np.zeros(total, dtype=np.float32),
        "timeouts": timeouts.reshape(total),
    }


def fit_bc(data: LAMDataset, subset: str, steps: int, seed: int):
    """A d3rlpy BC model fitted for ``steps`` updates on ``subset`` of the dataset."""
    import d3rlpy

    d3rlpy.seed(seed)
    arrays = mdp_arrays(data, subset)
    dataset = d3rlpy.dataset.MDPDataset(
        **arrays,
        action_space=(
            d3rlpy.constants.ActionSpace.DISCRETE
            if data.discrete
            else d3rlpy.constants.ActionSpace.CONTINUOUS
        ),
        action_size=(
            int(data.recover_environment().action_space.n)
            if data.discrete
            else int(np.prod(data.recover_environment().action_space.shape))
        ),
    )
    runs = int(arrays["timeouts"].sum())
    if dataset.transition_count != len(arrays["timeouts"]) - runs:  # one per row but the last
        raise SystemExit(f"error: d3rlpy made {dataset.transition_count} transitions")
    print(f"d3rlpy holds {dataset.transition_count:,} transitions ({subset}) in {runs:,} episodes")
    config = d3rlpy.algos.DiscreteBCConfig() if data.discrete else d3rlpy.algos.BCConfig()
    algo = config.create(device="cpu:0")
    algo.fit(
        dataset,
        n_steps=steps,
        n_steps_per_epoch=steps,
        show_progress=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),  # no d3rlpy_logs/ folder
    )
    return algo


def mean_return(env: gym.Env, act, episodes: int, seed: int) -> float:
    """Mean undiscounted return of ``act(flat_obs) -> action`` over ``episodes``."""
    total = 0.0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(np.ravel(obs)))
            total += float(reward)
            done = terminated or truncated
    return total / episodes


def run(data: LAMDataset, subset: str, steps: int, eval_episodes: int, seed: int) -> dict:
    algo = fit_bc(data, subset, steps, seed)
    env = data.recover_environment()
    env.action_space.seed(seed)

    def bc(flat_obs: np.ndarray):
        action = algo.predict(flat_obs[None].astype(np.float32))[0]
        return int(action) if data.discrete else action.astype(np.float32)

    outcomes = data.outcomes()
    behaviour = outcomes["reward"].reshape(len(data.episodes), -1).sum(1).mean()
    results = {
        "bc": mean_return(env, bc, eval_episodes, seed),
        "random": mean_return(env, lambda _: env.action_space.sample(), eval_episodes, seed),
        "behaviour (in the data)": float(behaviour),
    }
    print(f"\nBC with d3rlpy ({subset} transitions, {steps} updates) in {data.env_id}:")
    for name, value in results.items():
        print(f"  {name:24} mean return {value:8.2f}")
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", help="a Minari id or folder (default with --quick: collect one)")
    p.add_argument("--subset", choices=("all", "labelled"), default="all", help="what to clone")
    p.add_argument("--steps", type=int, default=3000, help="BC updates (default 3000)")
    p.add_argument("--eval-episodes", type=int, default=10, help="rollouts (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of d3rlpy and the rollouts")
    p.add_argument("--quick", action="store_true", help="a small collected dataset, 500 updates")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        import d3rlpy  # noqa: F401
    except ImportError:
        raise SystemExit("error: this example needs d3rlpy: pip install d3rlpy==2.8.1") from None
    import structlog  # d3rlpy's logger: keep its info lines (every setting, every epoch) out
    import torch

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    torch.set_num_threads(1)  # two 256-unit layers: one thread beats two on a busy machine
    if args.dataset is None and not args.quick:
        raise SystemExit("error: give --dataset ID, or --quick to collect a small one")
    with tempfile.TemporaryDirectory(prefix="lam-d3rlpy-") as tmp:
        if args.dataset is None:
            from lam_envs.collect import CollectConfig, collect

            config = CollectConfig(
                policy="snaking",
                epsilon=0.05,
                episodes=40,
                episode_length=50,
                label_fraction=0.05,
                full_labels=True,
                dataset_id="lam_envs/d3rlpy-example-v0",
            )
            path = collect(config, root=Path(tmp), progress=False).path
            print(f"collected {config.dataset_id} (2,000 transitions, full labels) in {tmp}")
        else:
            path = args.dataset
        steps = 500 if args.quick else args.steps
        return run(LAMDataset(path), args.subset, steps, args.eval_episodes, args.seed)


if __name__ == "__main__":
    main()
    sys.exit(0)
