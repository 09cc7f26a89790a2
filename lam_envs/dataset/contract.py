"""The dataset contract, checked in one place: every reader of the package (``LAMDataset``,
so training, the pipeline and the export) and ``python -m lam_envs.verify`` go through
:class:`ContractReader`, so what is refused cannot differ between them.

What a dataset of ``python -m lam_envs.collect`` is, and what is checked of it:

- its files: ``metadata.json`` and ``main_data.hdf5`` in its data folder, whose
  ``episode_{i}`` entries are groups or HDF5 external links into shard files of the same
  folder. Every file the dataset names is resolved here (``os.path.realpath``: symlinks
  too) and refused when it leaves the folder, *before* it is opened, with the same message
  whether the target exists or not. HDF5 never follows a link itself: the reader resolves
  each external or soft link and opens the target file only once it is known to be inside.
  Inside an episode every link is a hard link, no array is stored in external raw files or
  as a virtual dataset, and no array has a second name (another episode's array);
- its metadata (checked at open, O(1)): the contract version, the environment spec, the
  observation and action spaces, and every field the package reads, for type and range;
- its episodes (checked when read, per episode, vectorised): ``id`` and ``total_steps``
  attributes, the dtype and shape of each array against the spaces, finite observations
  within the observation space, actions that are the sentinel (-1, or a row of NaN) or a
  valid action, a boolean label mask that agrees with the sentinels, finite rewards and
  oracle fields.

Any failure is a :class:`DatasetError` naming the dataset, the episode and the field, the
bad value and what is allowed. This module needs numpy and h5py, never torch.
"""

from __future__ import annotations

#: 1: one main_data.hdf5. 2: episodes in shard files linked from main_data.hdf5, and the
#: data a function of (seed, block) (lam_envs.collect.shards), whatever the number of workers.
CONTRACT_VERSION = 2

#: The oldest dataset contract version this package reads; versions from here up to
#: ``CONTRACT_VERSION`` share the layout read here.
OLDEST_CONTRACT_VERSION = 1
MAIN_FILE = "main_data.hdf5"
METADATA_FILE = "metadata.json"
#: Links followed from one episode entry to its group at most (HDF5's own default limit).
MAX_LINK_HOPS = 16
#: Values in one observation at most: a metadata shape beyond this is not a dataset of ours
#: (and would make readers allocate absurd arrays).
MAX_OBSERVATION_SIZE = 2**26
#: Keys of an episode read per step (L rows); every other array has L + 1 rows.
PER_STEP = ("actions", "rewards", "terminations", "truncations")
LABEL_MASK = "infos/label_mask"
#: What a label fraction counts: single transitions, or whole episodes.
LABEL_UNITS = ("transition", "episode")


class DatasetError(ValueError):
    """A dataset that is missing, corrupt, or not one lam-envs made."""


#: Entry points of datasets collected before the environments moved to lam_envs.envs
#: (lam-envs 0.1.0): old -> new, the same classes.
RENAMED_ENTRY_POINTS = {
    f"lam_envs.{module}:{name}{kind}": f"lam_envs.envs.{module}:{name}{kind}"
    for module, name in (("linear", "LinearLAM"), ("grid", "GridLAM"))
    for kind in ("Env", "VectorEnv")
}
