"""Collect a Minari dataset with partial action labels.

    python -m lam_envs.collect --policy snaking
    python -m lam_envs.collect --env LinearLAM-v0 --preset other_agents --transitions 1e6
    python -m lam_envs.collect --recipe datasets/grid-low-correlated.toml

Rolls the native vector environment out under a behaviour policy, and writes the episodes
to a Minari dataset (HDF5) in chunks, so memory does not grow with the dataset. A fraction
of the transitions (or of whole episodes) keeps its action; the others get a sentinel
(NaN for continuous actions, -1 for discrete ones). The ground truth of every step sits
under ``infos/oracle``, for evaluation only. See the README's "Dataset contract".
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from tqdm.auto import tqdm

import lam_envs
from lam_envs import _staging as staging
from lam_envs._minari_writer import MinariWriter
from lam_envs.cli import Parser, parse_value
from lam_envs.policies import POLICIES, make_policy
from lam_envs.validate import check_choice, check_fraction, check_int, check_keys

LABEL_UNITS = ("transition", "episode")
CONTRACT_VERSION = 1  # bump when the dataset layout below changes
_CHUNK_BYTES = 96 * 2**20  # memory for one chunk of episodes in flight


@dataclass(frozen=True)
class CollectConfig:
    """What to collect. Validated on construction; every field is also a CLI flag and a
    recipe key."""

    env: str = "GridLAM-v0"
    preset: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: str = "random"
    epsilon: float | None = None
    chi: float | None = None
    episodes: int = 500
    episode_length: int = 200
    transitions: int | None = None
    seed: int = 0
    label_fraction: float = 0.01
    label_unit: str = "transition"
    full_labels: bool = False
    dataset_id: str | None = None

    def __post_init__(self):
        check_choice("environment", self.env, lam_envs.ENV_IDS)
        check_choice("policy", self.policy, POLICIES)
        check_int("episode_length", self.episode_length, low=1)
        if self.transitions is not None:
            transitions = check_int("transitions", self.transitions, low=1)
            object.__setattr__(self, "episodes", math.ceil(transitions / self.episode_length))
            object.__setattr__(self, "transitions", None)
        check_int("episodes", self.episodes, low=1)
        check_int("seed", self.seed, low=0)
        check_fraction("label_fraction", self.label_fraction)
        check_choice("label_unit", self.label_unit, LABEL_UNITS)
        knob = POLICIES[self.policy]["knob"]
        for name in ("epsilon", "chi"):
            value = getattr(self, name)
            if value is not None and name != knob:
                raise ValueError(
                    f"--{name} does not apply to policy {self.policy!r}"
                    + (f" (its knob is --{knob})" if knob else " (it has no knob)")
                )
        if self.dataset_id is not None:
            _check_dataset_id(self.dataset_id)

    @property
    def knobs(self) -> dict[str, float]:
        knob = POLICIES[self.policy]["knob"]
        value = getattr(self, knob) if knob else None
        return {} if value is None else {knob: value}

    @property
    def env_kwargs_full(self) -> dict[str, Any]:
        preset = {} if self.preset is None else {"preset": self.preset}
        return {**preset, **self.env_kwargs}

    def default_dataset_id(self) -> str:
        name = self.env.removesuffix("-v0").lower()
        if self.preset:
            name += f"-{self.preset}"
        name += "".join(f"-{k}{_short(v)}" for k, v in sorted(self.env_kwargs.items()))
        name += f"-{self.policy}" + "".join(f"-{k}{_short(v)}" for k, v in self.knobs.items())
        name += f"-{self.episodes}x{self.episode_length}-lab{_short(self.label_fraction)}"
        if self.label_unit == "episode":
            name += "ep"
        name += "-full" if self.full_labels else ""
        return f"lam-envs/{name.replace('_', '')}-seed{self.seed}-v0"

    @classmethod
    def from_recipe(cls, path: Path, **overrides: Any) -> CollectConfig:
        """A recipe is a TOML file whose keys are the fields of this class (plus
        ``description``)."""
        try:
            recipe = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"recipe file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"recipe file {str(path)!r} is not valid TOML: {error}") from None
        recipe.pop("description", None)
        fields = [f.name for f in dataclasses.fields(cls)]
        check_keys(f"key in recipe {Path(path).name}", recipe, fields)
        return cls(**{**recipe, **overrides})


def _short(value: Any) -> str:
    """A value as Minari ids allow it (letters, digits, - and _): 0.05 -> 0p05."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace(".", "p").replace("-", "m")


def _check_dataset_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id)
    if match is None:
        raise ValueError(
            f"invalid dataset id {dataset_id!r}: Minari ids are (namespace/)name-vN with "
            "letters, digits, '-' and '_' (a namespace of 2 characters at least)"
        )
    if match.group("version") is None:
        raise ValueError(f"dataset id {dataset_id!r} needs a version suffix, e.g. {dataset_id}-v0")


@dataclass
class CollectSummary:
    dataset_id: str
    path: Path
    transitions: int
    episodes: int
    labelled: int
    seconds: float

    def __str__(self) -> str:
        rate = self.transitions / max(self.seconds, 1e-9)
        return (
            f"dataset {self.dataset_id}\n"
            f"  path         {self.path}\n"
            f"  transitions  {self.transitions:,} in {self.episodes:,} episodes\n"
            f"  labelled     {self.labelled:,} transitions "
            f"({self.labelled / self.transitions:.2%})\n"
            f"  throughput   {rate:,.0f} transitions/s ({self.seconds:.2f} s)"
        )


class LabelChooser:
    """Chooses exactly k of n units uniformly at random, streaming over chunks.

    Selection sampling: for a chunk of m of the r units left, with j labels left to place,
    the number placed in the chunk is hypergeometric(j, r - j, m); their positions are
    uniform in the chunk. The result is a uniform k-subset, with O(chunk) memory.
    """

    def __init__(self, n: int, fraction: float, rng: np.random.Generator):
        self.left_units = n
        self.left_labels = 0 if fraction == 0 else max(1, round(fraction * n))
        self.total = self.left_labels
        self.rng = rng

    def next(self, m: int) -> np.ndarray:
        j, r = self.left_labels, self.left_units
        if j == 0:
            k = 0
        elif j >= r:
            k = m
        else:
            k = int(self.rng.hypergeometric(j, r - j, m))
        mask = np.zeros(m, dtype=bool)
        mask[self.rng.choice(m, size=k, replace=False)] = True
        self.left_labels -= k
        self.left_units -= m
        return mask


class _StopRequests:
    """Turns SIGINT/SIGTERM into a flag checked at safe points.

    A KeyboardInterrupt raised at an arbitrary bytecode can land inside h5py's or
    weakref's callbacks, where Python prints and ignores it; checking a flag between
    steps makes the interruption certain, and the writer then removes its staging folder.
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


def collect(
    config: CollectConfig,
    root: Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> CollectSummary:
    """Roll out, label and write the dataset described by ``config``; see the module doc."""
    start = time.perf_counter()
    root = Path(root) if root is not None else default_root()
    staging.check_writable(root)
    dataset_id = config.dataset_id or config.default_dataset_id()
    length, n_episodes = config.episode_length, config.episodes

    single = gym.make(config.env, max_episode_steps=length, **config.env_kwargs_full)
    policy = make_policy(config.policy, single, **config.knobs)
    discrete = isinstance(single.action_space, gym.spaces.Discrete)
    seed_seq = np.random.SeedSequence(config.seed)
    first_episode_seed = int(seed_seq.generate_state(1)[0] >> 1)  # episode i: this + i
    policy_rng, label_rng = (np.random.default_rng(s) for s in seed_seq.spawn(2))
    unit_count = n_episodes * length if config.label_unit == "transition" else n_episodes
    chooser = LabelChooser(unit_count, config.label_fraction, label_rng)

    batch = _chunk_episodes(single, length, n_episodes)
    metadata = {
        "algorithm_name": f"lam-envs behaviour policy {config.policy} {config.knobs or ''}",
        "author": {"lam-envs"},
        "minari_version": minari.__version__,
        "description": (
            f"{config.env} {config.env_kwargs_full} under policy {config.policy} "
            f"{config.knobs}; {config.label_fraction:g} of {config.label_unit}s labelled. "
            "Unlabelled actions hold NaN (Box) or -1 (Discrete); infos/label_mask marks "
            "labelled steps; infos/oracle holds ground truth for evaluation only."
        ),
        "lam_envs": {
            "contract_version": CONTRACT_VERSION,
            "package_version": lam_envs.__version__,
            "collect": {**dataclasses.asdict(config), "dataset_id": dataset_id},
        },
    }
    labelled = 0
    bar = tqdm(
        total=n_episodes * length,
        unit="tr",
        unit_scale=True,
        disable=not progress,
        desc=dataset_id.split("/")[-1][:40],
        file=sys.stderr,
    )
    with (
        _StopRequests() as stop,
        MinariWriter(
            root,
            dataset_id,
            single.spec,
            single.observation_space,
            single.action_space,
            metadata,
            overwrite,
        ) as writer,
        bar,
    ):
        env = None
        for first in range(0, n_episodes, batch):
            b = min(batch, n_episodes - first)
            if env is None or env.num_envs != b:
                env = gym.make_vec(
                    config.env, num_envs=b, max_episode_steps=length, **config.env_kwargs_full
                )
            episodes = _rollout(
                env, policy, policy_rng, length, first_episode_seed + first, bar, stop
            )
            if config.label_unit == "transition":
                mask = chooser.next(b * length).reshape(b, length)
            else:
                mask = np.repeat(chooser.next(b)[:, None], length, axis=1)
            labelled += int(mask.sum())
            _apply_labels(episodes, mask, discrete, config.full_labels)
            seeds = first_episode_seed + first + np.arange(b)
            writer.write_episodes(episodes, seeds, stop.check)
        path = writer.publish({"lam_envs": {**metadata["lam_envs"], "labelled": labelled}})
    return CollectSummary(
        dataset_id, path, n_episodes * length, n_episodes, labelled, time.perf_counter() - start
    )


def _chunk_episodes(env: gym.Env, length: int, n_episodes: int) -> int:
    """How many episodes to roll out at once so one chunk stays near _CHUNK_BYTES."""
    _, info = env.reset(seed=0)
    obs_bytes = np.prod(env.observation_space.shape) * 4
    info_bytes = sum(np.asarray(v).nbytes for v in info.values())
    per_episode = (length + 1) * (2 * obs_bytes + info_bytes + 32)
    return int(np.clip(_CHUNK_BYTES // per_episode, 1, min(n_episodes, 4096)))


def _rollout(env, policy, rng, length: int, seed: int, bar, stop) -> dict[str, Any]:
    """One batch of fixed-length episodes as arrays (B, L+1, ...) and (B, L, ...)."""
    obs, info = env.reset(seed=seed)
    b = env.num_envs
    observations = np.empty((b, length + 1, *obs.shape[1:]), dtype=obs.dtype)
    observations[:, 0] = obs
    infos = {k: np.empty((b, length + 1, *v.shape[1:]), dtype=v.dtype) for k, v in info.items()}
    for key, value in info.items():
        infos[key][:, 0] = value
    actions = rewards = None
    for t in range(length):
        action = policy(obs, rng)
        if actions is None:
            actions = np.empty((b, length, *action.shape[1:]), dtype=action.dtype)
            rewards = np.empty((b, length), dtype=np.float64)
        actions[:, t] = action
        obs, reward, _, _, info = env.step(action)
        observations[:, t + 1] = obs
        rewards[:, t] = reward
        for key, value in info.items():
            infos[key][:, t + 1] = value
        bar.update(b)
        stop.check()
    truncations = np.zeros((b, length), dtype=bool)
    truncations[:, -1] = True  # every episode ends by the time limit
    return {
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "terminations": np.zeros((b, length), dtype=bool),
        "truncations": truncations,
        "infos": {"oracle": infos},
    }


def _apply_labels(episodes: dict[str, Any], mask: np.ndarray, discrete: bool, full: bool):
    """Hide unlabelled actions (unless ``full``) and record the mask and the true actions."""
    true_actions = episodes["actions"]
    sentinel = -1 if discrete else np.nan
    b, length = mask.shape
    oracle_action = np.full((b, length + 1, *true_actions.shape[2:]), sentinel, true_actions.dtype)
    oracle_action[:, 1:] = true_actions
    label_mask = np.zeros((b, length + 1), dtype=bool)
    label_mask[:, 1:] = mask
    if not full:
        hidden = true_actions.copy()
        hidden[~mask] = sentinel
        episodes["actions"] = hidden
    oracle = {"action": oracle_action, **episodes["infos"]["oracle"]}
    episodes["infos"] = {"label_mask": label_mask, "oracle": oracle}


# ---------------------------------------------------------------- command line


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
    p.add_argument("--preset", help="environment preset: none/low/high (grid); iid, ... (linear)")
    p.add_argument(
        "--env-kwarg",
        "-k",
        action="append",
        metavar="KEY=VALUE",
        help="environment parameter, repeatable (e.g. -k sigma_exo=2.0 -k d_b=4)",
    )
    p.add_argument(
        "--policy", help=f"behaviour policy (default {d.policy}): " + ", ".join(POLICIES)
    )
    p.add_argument("--epsilon", type=float, help="snaking: probability of a random action")
    p.add_argument("--chi", type=float, help="linear: determinism χ (0 random, 1 a = Π o)")
    p.add_argument("--episodes", type=int, help=f"number of episodes (default {d.episodes})")
    p.add_argument(
        "--episode-length", type=int, help=f"steps per episode (default {d.episode_length})"
    )
    p.add_argument("--transitions", type=float, help="total transitions instead of --episodes")
    p.add_argument("--seed", type=int, help=f"seed of rollouts and labels (default {d.seed})")
    p.add_argument(
        "--label-fraction",
        type=float,
        help=f"λ, the share of labelled units, in [0, 1] (default {d.label_fraction})",
    )
    p.add_argument(
        "--label-unit", choices=LABEL_UNITS, help="label single transitions or whole episodes"
    )
    p.add_argument(
        "--full-labels",
        action="store_true",
        help="keep every action (for libraries that cannot handle missing ones); "
        "infos/label_mask still marks the λ subset",
    )
    p.add_argument("--dataset-id", help="Minari id, namespace/name-vN (default: from the flags)")
    p.add_argument("--root", type=Path, help="output root (default: Minari's, ~/.minari/datasets)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument(
        "--recipe",
        type=Path,
        nargs="+",
        help="TOML recipe(s) from datasets/, built in turn; flags given override them",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--clean",
        action="store_true",
        help="only remove the staging folders that killed runs left under the root, "
        "and list what remains (runs of live processes are never touched)",
    )
    return p


def configs_from_args(args: argparse.Namespace) -> list[CollectConfig]:
    """One config per recipe (or one from the flags alone); flags given override recipes."""
    given = vars(args).copy()
    recipes = given.pop("recipe", None)
    for key in ("root", "overwrite", "quiet", "clean"):
        given.pop(key, None)
    if "env_kwarg" in given:
        kwargs = {}
        for item in given.pop("env_kwarg"):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--env-kwarg expects KEY=VALUE, got {item!r}")
            kwargs[key] = parse_value(value)
        given["env_kwargs"] = kwargs
    if "transitions" in given:
        given["transitions"] = int(given["transitions"])
    if recipes is None:
        return [CollectConfig(**given)]
    if len(recipes) > 1 and "dataset_id" in given:
        raise ValueError("--dataset-id names one dataset; it cannot apply to several recipes")
    return [CollectConfig.from_recipe(recipe, **given) for recipe in recipes]


def clean_root(root: Path) -> int:
    """``--clean``: remove stale staging folders under ``root`` and say what is left."""
    found = staging.clean(root)
    for path, status in found:
        print(f"{status:9} {path}")
    for path in staging.unpublished(root):
        print(f"kept      {path} (a dataset whose publishing was refused; delete it by hand)")
    removed = sum(status == "removed" for _, status in found)
    print(f"removed {removed} stale staging folder(s) under {root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    root = getattr(args, "root", None)
    if getattr(args, "clean", False):
        return clean_root(Path(root) if root is not None else default_root())
    try:
        for config in configs_from_args(args):
            summary = collect(
                config,
                root,
                overwrite=getattr(args, "overwrite", False),
                progress=not getattr(args, "quiet", False),
            )
            print(summary)
            hint = "" if root is None else f"MINARI_DATASETS_PATH={root} "
            load = f"import minari; minari.load_dataset('{summary.dataset_id}')"
            print(f'  load with    {hint}python -c "{load}"')
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the dataset being written was removed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
