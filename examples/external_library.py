"""Load a lam-envs dataset into an external offline-RL library (TorchRL) and check that the
numbers it hands back are ours.

    pip install torchrl==0.10.1               # beside our pins (0.11-0.14.1: see 4. below)
    python examples/external_library.py       # collects a small dataset in a temp folder
    python examples/external_library.py --env LinearLAM-v0 --preset other_agents
    python examples/external_library.py --dataset-id lam_envs/NAME-v0 --root ~/.minari/datasets

What it does:

1. Without ``--dataset-id``, collects a small dataset with ``full_labels=True`` (the
   ``--full-labels`` flag of ``python -m lam_envs.collect``): offline-RL libraries expect
   every action to be present, and do not know our sentinels for unlabelled actions (NaN
   for the linear env, -1 for the grid). ``infos/label_mask`` still marks the λ subset.
2. Reads the reference arrays with ``minari.load_dataset`` (rewards, terminations,
   truncations, episode boundaries) and ``lam_models.data.LAMDataset`` (obs, next_obs,
   actions, label_mask), and checks that these two agree.
3. Loads the dataset with TorchRL's ``MinariExperienceReplay(..., load_from_local_minari=
   True)`` and compares every field, and a sampled batch, with the reference.
4. TorchRL 0.11 to 0.14.1 return all-zero tensors here: ``_download_and_preproc`` fills a
   TensorDict and then replaces it with ``td_data.memmap_like(...)``, a *contentless*
   memory-mapped copy (0.10.x called ``memmap_like`` before filling, which works). The
   script detects this, says so, and shows the workaround: build TorchRL's
   ``ReplayBuffer`` in the same (TED) layout directly from ``minari.load_dataset`` arrays.

Prints a table of what was compared and whether it matched; exits 1 if no TorchRL path
gives back our numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import minari
import numpy as np

from lam_envs.collect import CollectConfig, collect
from lam_models.data import LAMDataset

FIELDS = (
    "observation",
    "next observation",
    "action",
    "reward",
    "terminated",
    "truncated",
    "episode index",
    "label_mask",
)


@dataclass
class Check:
    """Comparisons of one way of loading against the reference, field by field."""

    name: str
    matched: dict[str, bool] = field(default_factory=dict)
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.matched) and all(self.matched.values())


@contextlib.contextmanager
def minari_root(root: Path) -> Iterator[None]:
    """Point Minari (and TorchRL, which reads the same variable) at ``root``."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide the library's tqdm bar (it writes to stderr); errors still raise."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def same(a: Any, b: Any) -> bool:
    """Equal shape and values (NaN equal to NaN, so that sentinel actions compare)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    floating = np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating)
    return bool(np.array_equal(a, b, equal_nan=floating))


# ---------------------------------------------------------------- the reference


def reference_arrays(dataset_id: str, root: Path) -> tuple[dict[str, np.ndarray], Check]:
    """One row per transition, from minari.load_dataset, checked against LAMDataset."""
    with minari_root(root):
        dataset = minari.load_dataset(dataset_id)
        episodes = list(dataset.iterate_episodes())
    ref = {
        "observation": np.concatenate([e.observations[:-1] for e in episodes]),
        "next observation": np.concatenate([e.observations[1:] for e in episodes]),
        "action": np.concatenate([e.actions for e in episodes]),
        "reward": np.concatenate([e.rewards for e in episodes]),
        "terminated": np.concatenate([e.terminations for e in episodes]),
        "truncated": np.concatenate([e.truncations for e in episodes]),
        "episode index": np.concatenate([np.full(len(e.rewards), e.id) for e in episodes]),
        "label_mask": np.concatenate([e.infos["label_mask"][1:] for e in episodes]),
    }
    ours = LAMDataset(Path(root, dataset_id))
    mine = ours.read_numpy()
    check = Check("LAMDataset")
    check.matched = {
        "observation": same(mine["obs"], ref["observation"]),
        "next observation": same(mine["next_obs"], ref["next observation"]),
        "action": same(mine["actions"], ref["action"]),
        "label_mask": same(mine["label_mask"], ref["label_mask"]),
        # LAMDataset has no rewards/dones; its episodes are fixed-length, in order
        "episode index": same(np.repeat(ours.episodes, ours.episode_length), ref["episode index"]),
    }
    check.note = "lam_models.data.LAMDataset against minari.load_dataset"
    return ref, check


# ---------------------------------------------------------------- TorchRL


def torchrl_fields(td) -> dict[str, np.ndarray]:
    """Our field names from a TorchRL TensorDict in its TED layout."""
    return {
        "observation": td["observation"].numpy(),
        "next observation": td["next", "observation"].numpy(),
        "action": td["action"].numpy(),
        "reward": td["next", "reward"].squeeze(-1).numpy(),
        "terminated": td["next", "terminated"].squeeze(-1).numpy(),
        "truncated": td["next", "truncated"].squeeze(-1).numpy(),
        "episode index": td["episode"].numpy(),
        "label_mask": td["next", "info", "label_mask"].numpy(),
    }


def compare(name: str, td, ref: dict[str, np.ndarray], rb=None) -> Check:
    check = Check(name)
    try:
        got = torchrl_fields(td)
    except KeyError as error:
        check.note = f"missing key {error}"
        return check
    check.matched = {key: same(got[key], ref[key]) for key in FIELDS}
    if rb is not None:  # a sampled batch must be the reference rows it says it is
        batch, info = rb.sample(return_info=True)
        index = np.asarray(info["index"])
        sampled = torchrl_fields(batch)
        check.matched["sampled batch"] = all(same(sampled[key], ref[key][index]) for key in FIELDS)
    zeros = [key for key in ("observation", "action") if not np.any(got[key])]
    if zeros and any(np.any(ref[key]) for key in zeros):
        check.note = "BROKEN: all-zero " + ", ".join(zeros)
    return check


def torchrl_native(dataset_id: str, root: Path, cache: Path, ref, batch_size: int):
    """TorchRL's own loader, reading the local Minari dataset."""
    from torchrl.data.datasets.minari_data import MinariExperienceReplay

    # ``root`` is TorchRL's cache for its converted copy: never the Minari root itself
    # (with download="force" it deletes <root>/<dataset_id> first).
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # it logs the whole layout
    with minari_root(root), quiet_progress():
        rb = MinariExperienceReplay(
            dataset_id,
            batch_size=batch_size,
            root=cache,
            download="force",
            load_from_local_minari=True,
        )
    return compare("MinariExperienceReplay", rb.storage[:], ref, rb)


def torchrl_workaround(dataset_id: str, root: Path, ref, batch_size: int):
    """The workaround: TorchRL's ReplayBuffer built from minari.load_dataset arrays, in
    the layout MinariExperienceReplay would produce (TED)."""
    import torch
    from tensordict import TensorDict
    from torchrl.data import LazyTensorStorage, ReplayBuffer

    with minari_root(root):
        episodes = list(minari.load_dataset(dataset_id).iterate_episodes())

    def cat(get) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.concatenate([get(e) for e in episodes])))

    n = sum(len(e.rewards) for e in episodes)
    terminated = cat(lambda e: e.terminations).unsqueeze(-1)
    truncated = cat(lambda e: e.truncations).unsqueeze(-1)
    td = TensorDict(
        {
            "observation": cat(lambda e: e.observations[:-1]),
            "action": cat(lambda e: e.actions),
            "episode": cat(lambda e: np.full(len(e.rewards), e.id)),
            "next": {
                "observation": cat(lambda e: e.observations[1:]),
                "reward": cat(lambda e: e.rewards).unsqueeze(-1),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
                "info": {"label_mask": cat(lambda e: e.infos["label_mask"][1:])},
            },
        },
        batch_size=[n],
    )
    rb = ReplayBuffer(storage=LazyTensorStorage(n), batch_size=batch_size)
    rb.extend(td)
    check = compare("workaround", rb.storage[:], ref, rb)
    check.note = "torchrl ReplayBuffer built from minari.load_dataset arrays"
    return check


# ---------------------------------------------------------------- main


def print_table(checks: list[Check]) -> None:
    names = [c.name for c in checks]
    rows = list(FIELDS) + ["sampled batch"]
    width = max(len(n) for n in names) + 2
    print(f"\n{'field':18}" + "".join(f"{n:>{width}}" for n in names))
    for row in rows:
        cells = []
        for c in checks:
            value = c.matched.get(row)
            cells.append("-" if value is None else ("match" if value else "MISMATCH"))
        print(f"{row:18}" + "".join(f"{cell:>{width}}" for cell in cells))
    print(f"{'':18}" + "".join(f"{('OK' if c.ok else 'FAILED'):>{width}}" for c in checks))
    for c in checks:
        if c.note:
            print(f"  {c.name}: {c.note}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset-id", help="an existing dataset (default: collect a small one)")
    p.add_argument("--root", type=Path, help="Minari root of the dataset (default: a temp folder)")
    p.add_argument("--env", default="GridLAM-v0", help="environment to collect (no --dataset-id)")
    p.add_argument("--preset", help="its preset (e.g. low, other_agents)")
    p.add_argument("--episodes", type=int, default=40, help="episodes to collect")
    p.add_argument("--episode-length", type=int, default=100, help="steps per episode")
    p.add_argument("--batch-size", type=int, default=64, help="size of the sampled batch")
    p.add_argument("--quick", action="store_true", help="a tiny dataset (smoke test)")
    return p


def main(argv: list[str] | None = None) -> dict[str, Check]:
    """Run the comparison; returns the checks by name (the exit code is in ``cli``)."""
    args = build_parser().parse_args(argv)
    try:
        import torchrl  # noqa: F401
    except ImportError:
        raise SystemExit("this example needs TorchRL: pip install torchrl") from None

    with tempfile.TemporaryDirectory(prefix="lam-external-") as tmp_name:
        tmp = Path(tmp_name)
        if args.root:
            root = Path(args.root)
        elif args.dataset_id:  # an existing dataset: Minari's root (MINARI_DATASETS_PATH)
            from minari.storage.datasets_root_dir import get_dataset_path

            root = Path(get_dataset_path())
        else:
            root = tmp / "minari"
        dataset_id = args.dataset_id
        if dataset_id is None:
            episodes, length = (6, 20) if args.quick else (args.episodes, args.episode_length)
            policy = "snaking" if args.env.startswith("Grid") else "random"
            config = CollectConfig(
                env=args.env,
                preset=args.preset,
                policy=policy,
                episodes=episodes,
                episode_length=length,
                label_fraction=0.1,
                full_labels=True,  # libraries cannot handle NaN / -1 actions
                dataset_id=f"lam_envs/external-example-{args.env.lower().removesuffix('-v0')}-v0",
            )
            summary = collect(config, root=root, overwrite=True, progress=False)
            dataset_id = summary.dataset_id
            print(f"collected {dataset_id} ({summary.transitions:,} transitions, full labels)")
        else:
            print(f"using {dataset_id} under {root}")
        config_used = LAMDataset(Path(root, dataset_id)).collect_config
        if not config_used.get("full_labels"):
            print(
                "note: this dataset hides unlabelled actions (NaN / -1); offline-RL "
                "libraries will take the sentinels for actions. Collect with --full-labels."
            )

        ref, reference_check = reference_arrays(dataset_id, root)
        batch_size = min(args.batch_size, len(ref["reward"]))
        version = importlib.metadata.version("torchrl")
        checks = [reference_check]
        try:
            native = torchrl_native(dataset_id, root, tmp / "torchrl-cache", ref, batch_size)
        except Exception as error:  # the library's own bugs; report them, do not hide them
            native = Check("MinariExperienceReplay", note=f"raised {error!r}")
        native.note = f"torchrl {version}" + (f", {native.note}" if native.note else "")
        checks.append(native)
        if not native.ok:
            print(
                f"\ntorchrl {version}: MinariExperienceReplay does not give back our data."
                "\nKnown bug of torchrl 0.11-0.14.1: the loader fills a TensorDict, then "
                "replaces it with td.memmap_like(...), which allocates an empty (zero) copy. "
                "Workaround: build the ReplayBuffer from minari.load_dataset arrays "
                "(torchrl_workaround in this file)."
            )
        checks.append(torchrl_workaround(dataset_id, root, ref, batch_size))
        print_table(checks)
        shutil.rmtree(tmp / "torchrl-cache", ignore_errors=True)
    return {c.name: c for c in checks}


def cli() -> int:
    checks = main()
    usable = [c.name for name, c in checks.items() if name != "LAMDataset" and c.ok]
    verdict = "torchrl usable via " + " and ".join(usable) if usable else "NO torchrl path matched"
    print(f"\nresult: {verdict}")
    return 0 if usable and checks["LAMDataset"].ok else 1


if __name__ == "__main__":
    sys.exit(cli())
