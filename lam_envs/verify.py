"""Check a dataset against the lam-envs contract without training on it.

    python -m lam_envs.verify lam_envs/gridlam-snaking-...-v0      # a Minari id
    python -m lam_envs.verify path/to/dataset                       # or a folder

Verify a dataset from an untrusted source before anything else reads it: ``minari`` and
h5py follow the HDF5 links a dataset holds wherever they point, while this command (and
``LAMDataset``, hence training, the pipeline and the export) first checks that every file
and link stays inside the dataset's own folder.

What is checked (``lam_envs.dataset``, the code every reader of the package uses):
the files and links (nothing outside the folder; no soft or external links, external raw
storage or virtual arrays inside an episode; no array under two names), the metadata (the
contract version, the environment spec, the spaces, every field's type and range, the totals
against the episodes), and every array of every episode (rows, dtype, shape, finite values
within the observation and action spaces, a boolean label mask that agrees with the action
sentinels, the labelled count). Exit status 0 with a summary when the dataset holds to the
contract; one line ``error: ...`` and status 2 when it does not.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lam_envs.dataset import (
    LABEL_MASK,
    ContractReader,
    DatasetError,
    walk_links,
)
from lam_envs.utils.cli import Parser, run_main

__all__ = ["Verified", "main", "verify"]


@dataclass(frozen=True)
class Verified:
    """What ``verify`` found: the dataset's id, data folder, environment, episodes, steps
    per episode, transitions and labelled transitions."""

    dataset_id: str
    path: Path
    env_id: str
    episodes: int
    episode_length: int
    transitions: int
    labelled: int

    def __str__(self) -> str:
        return (
            f"ok: {self.dataset_id} ({self.env_id}) holds to the lam-envs contract: "
            f"{self.episodes:,} episodes of {self.episode_length} steps, "
            f"{self.transitions:,} transitions, {self.labelled:,} labelled; "
            f"every file and link inside {self.path}"
        )


def verify(dataset: str | Path) -> Verified:
    """Check ``dataset`` (a Minari id or a folder) against the contract, reading every
    array of every episode once; raise :class:`DatasetError` at the first breach."""
    reader = ContractReader(dataset)
    try:
        labelled = 0
        names = None
        for index in reader.episodes:
            index = int(index)
            group = reader.group(index)
            keys = walk_links(reader.name, f"episode {index}", group)
            oracle = sorted(k for k in keys if k.startswith("infos/oracle/"))
            if names is None:
                names = oracle
            elif oracle != names:
                raise DatasetError(
                    f"dataset {reader.name!r} is corrupt: episode {index} has oracle fields "
                    f"{oracle}, episode 0 {names}"
                )
            arrays = reader.episode(index, keys)
            labelled += int(np.count_nonzero(arrays[LABEL_MASK][1:]))
        claimed = reader.metadata["lam_envs"].get("labelled")
        if claimed is not None and claimed != labelled:
            raise DatasetError(
                f"dataset {reader.name!r} is corrupt: metadata field 'lam_envs.labelled' is "
                f"{claimed!r}, but its label masks mark {labelled} transitions"
            )
        n = len(reader.episodes)
        return Verified(
            str(reader.dataset_id),
            reader.data_path,
            reader.env_spec.id,
            n,
            reader.episode_length,
            n * reader.episode_length,
            labelled,
        )
    finally:
        reader.close()


def build_parser() -> Parser:
    p = Parser(
        prog="python -m lam_envs.verify",
        description="Check a lam-envs dataset against its contract without training: every "
        "file and HDF5 link stays inside the dataset's folder (checked before it is opened), "
        "the metadata's fields, spaces and totals, and every array of every episode (dtype, "
        "shape, finite values within the observation and action spaces, a boolean label mask "
        "that agrees with the action sentinels). Run it on a dataset from an untrusted source "
        "before anything else (minari, h5py) reads it. Exit 0 with a summary, or one line "
        "'error: ...' and exit 2.",
    )
    p.add_argument("dataset", help="a Minari dataset id (under MINARI_DATASETS_PATH) or folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = verify(args.dataset)
    except (DatasetError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result)
    return 0


if __name__ == "__main__":
    run_main(main)
