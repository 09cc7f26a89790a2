"""One data split for every trainer, the pipeline and the scoring: a dataset's train and
held-out transitions, the labelled subset a learner may use, k-step partners, the oracle
fields, and seeded batches for M copies trained together.

    split = DataSplit("lam_envs/grid-low-uniform-v0", held_out=0.1, seed=0, label_fraction=0.01)
    split.train.obs(), split.train.next_obs(), split.train.far_obs(3)   # numpy, (N, *obs)
    split.train.actions, split.train.label_mask   # what a learner may read (sentinels elsewhere)
    split.test.oracle["action"]                   # ground truth: evaluation only
    data = CopyBatches([split], seeds=[0], device="cpu")
    batch = data.sample(128)                      # Transitions of (M, B, ...) tensors

Episodes are stored as frames: an episode of L steps is L + 1 consecutive rows of
``frames``, and transition i is the pair (frames[start_i], frames[start_i + 1]). Any
future offset j is then one index away (o_{t+j} = frames[min(start_i + j, last_i)]),
so a look-ahead drawn per example costs no memory.

The labelled subset is ``label_fraction`` of the train transitions, drawn from the
dataset's labelled ones with the run's :attr:`~lam_models.seeding.Stream.LABELS` stream
so that subsets are nested: for one seed, a smaller fraction's subset lies inside a
larger one's. With ``label_unit="episode"`` it is that share of the train episodes
instead, whole (labels given per trajectory, as in the published grid experiments: "1%"
= 1% of the trajectories), drawn from the episodes the dataset labels throughout. Actions
outside the subset hold the dataset's sentinel (−1 on the grid, NaN on the linear env),
exactly as unlabelled actions on disk do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lam_envs.dataset import LABEL_UNITS  # what a label fraction counts
from lam_envs.utils.config import option
from lam_envs.utils.validate import check_choice, check_fraction, check_int
from lam_models.data import DatasetError, LAMDataset, to_device
from lam_models.frames import stack_frames
from lam_models.seeding import Stream, numpy_rng, torch_generator

__all__ = [
    "LABEL_UNITS",
    "CopyBatches",
    "DataSpec",
    "DataSplit",
    "Part",
    "Transitions",
    "action_targets",
    "choose_labels",
    "held_out_option",
    "labelled_mean",
]


def held_out_option(help: str = "share of episodes held out for scoring, in (0, 1)"):
    """The ``held_out`` field of a run's configuration, declared (and so checked: "held_out
    must be in (0, 1), got 1.0") in one place for every command that splits a dataset."""
    return option(0.1, help, above=0, below=1)


def labelled_mean(values: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (M, B) over each copy's labelled transitions (``label_mask``,
    (M, B)): (M,); 0 for a copy whose batch has none."""
    return (values * label_mask).sum(1) / label_mask.sum(1).clamp(min=1)


class Transitions(NamedTuple):
    """A batch for M copies. obs, next_obs, far_obs: (M, B, *obs_shape) float32, o_t,
    o_{t+1} and o_{t+j} (the IDM's partner; ``far_obs is next_obs`` when j = 1); actions:
    (M, B) int64 with −1, or (M, B, d_a) float32 with NaN, where unlabelled; label_mask:
    (M, B) bool."""

    obs: torch.Tensor
    next_obs: torch.Tensor
    far_obs: torch.Tensor
    actions: torch.Tensor
    label_mask: torch.Tensor


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know of its data to be built.

    kind: "grid" or "linear" (the environment family; "?" for another environment).
    obs_shape: shape of one observation.  discrete: whether actions are indices.
    action_dim: number of actions (discrete) or the action's dimension d_a.
    """

    kind: str
    obs_shape: tuple[int, ...]
    discrete: bool
    action_dim: int

    def __post_init__(self):
        # A spec may come from a run.json: refuse sizes no dataset has before a model of
        # them is allocated (1e7 x 1e7 observations would be 400 TB of weights).
        from lam_envs.dataset import MAX_OBSERVATION_SIZE

        shape = self.obs_shape
        if not isinstance(shape, list | tuple) or not shape:
            raise ValueError(f"obs_shape must be a non-empty list of sizes, got {shape!r:.80}")
        shape = tuple(check_int("obs_shape", s, low=1, high=MAX_OBSERVATION_SIZE) for s in shape)
        if math.prod(shape) > MAX_OBSERVATION_SIZE:
            raise ValueError(
                f"obs_shape {shape} holds {math.prod(shape):,} values per observation; at "
                f"most {MAX_OBSERVATION_SIZE:,} are allowed"
            )
        object.__setattr__(self, "obs_shape", shape)
        object.__setattr__(
            self, "action_dim", check_int("action_dim", self.action_dim, low=1, high=2**20)
        )
        if not isinstance(self.discrete, bool):
            raise ValueError(f"discrete must be true or false, got {self.discrete!r:.40}")


def action_targets(actions: np.ndarray, discrete: bool, dim: int) -> np.ndarray:
    """Float regression targets of actions (N,) or (N, d_a): one-hot (N, dim) when discrete.
    Sentinel rows (−1 / NaN) become zeros; they carry no label and are never used."""
    if discrete:
        targets = np.zeros((len(actions), dim), np.float32)
        known = actions >= 0
        targets[np.flatnonzero(known), actions[known]] = 1.0
        return targets
    return np.nan_to_num(np.asarray(actions, np.float32))


def choose_labels(
    label_mask: np.ndarray, fraction: float | None, seed: int, units: np.ndarray | None = None
) -> np.ndarray:
    """The labelled subset: round(fraction · N) (at least 1 when fraction > 0; none at 0) of
    the labelled transitions in ``label_mask`` (N,), the first ones of a seeded permutation,
    so that subsets are nested across fractions. ``None``: every labelled transition.

    ``units`` (N,): the episode (any id) of each transition; the subset is then whole
    episodes: round(fraction · number of episodes) (at least 1 when fraction > 0) of the
    episodes labelled throughout in ``label_mask``, nested across fractions in the same way."""
    if fraction is None:
        return np.asarray(label_mask, bool).copy()
    fraction = check_fraction("label_fraction", fraction)  # -0.5 or NaN is no "1 label"
    if units is not None:
        return _choose_units(np.asarray(label_mask, bool), fraction, seed, np.asarray(units))
    available = np.flatnonzero(label_mask)
    n = len(label_mask)
    wanted = max(1, round(fraction * n)) if fraction > 0 else 0
    if wanted > len(available):
        raise ValueError(
            f"label fraction {fraction:g} out of range: it needs {wanted} labelled train "
            f"transitions but the dataset has {len(available)} of {n} "
            f"({len(available) / max(n, 1):.2%}); collect with a larger --label-fraction"
        )
    chosen = numpy_rng(seed, Stream.LABELS).permutation(available)[:wanted]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return mask


def _choose_units(label_mask: np.ndarray, fraction: float, seed: int, units: np.ndarray):
    if units.shape != label_mask.shape:
        raise ValueError(f"units {units.shape} and label_mask {label_mask.shape} differ in shape")
    ids, index = np.unique(units, return_inverse=True)
    unlabelled = np.bincount(index, weights=~label_mask, minlength=len(ids))
    available = np.flatnonzero(unlabelled == 0)
    wanted = max(1, round(fraction * len(ids))) if fraction > 0 else 0
    if wanted > len(available):
        raise ValueError(
            f"label fraction {fraction:g} of episodes out of range: it needs {wanted} train "
            f"episodes labelled throughout but the dataset has {len(available)} of {len(ids)}; "
            "collect with --label-unit episode and a larger --label-fraction"
        )
    chosen = numpy_rng(seed, Stream.LABELS).permutation(available)[:wanted]
    return np.isin(index, chosen)


@dataclass
class Part:
    """The transitions of some episodes (numpy; N transitions, F frames).

    frames (F, *obs_shape): every observation of the episodes, episode after episode.
    start (N,): row of o_t in ``frames``; o_{t+1} is the next row.  last (N,): row of the
    episode's final observation (the furthest partner there is).  actions (N[, d_a]): what
    a learner may read (sentinel outside the labelled subset).  label_mask (N,) bool.
    oracle: ground truth per transition (evaluation only).  episodes: the episode ids.
    first (N,): row of the episode's first observation. ``history`` = h > 1: observations
    stacked with the h − 1 before them (:func:`stack_frames`), e.g. (N, h·C, H, W).
    """

    frames: np.ndarray
    start: np.ndarray
    last: np.ndarray
    actions: np.ndarray
    label_mask: np.ndarray
    oracle: dict[str, np.ndarray]
    episodes: np.ndarray
    first: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.start)

    def obs(self, history: int = 1) -> np.ndarray:
        """o_t of every transition, (N, *obs_shape)."""
        return self._stacked(self.start, history)

    def next_obs(self, history: int = 1) -> np.ndarray:
        """o_{t+1}, (N, *obs_shape)."""
        return self._stacked(self.start + 1, history)

    def far_obs(self, offset: int = 1, history: int = 1) -> np.ndarray:
        """o_{t+offset}, or the episode's last observation where that is beyond its end."""
        return self._stacked(np.minimum(self.start + offset, self.last), history)

    def _stacked(self, rows: np.ndarray, history: int) -> np.ndarray:
        return (
            self.frames[rows]
            if history == 1
            else stack_frames(self.frames, rows, self.first, history)
        )

    def subset(self, rows: np.ndarray) -> Part:
        """The transitions ``rows`` (the frames are shared, not copied)."""
        rows = np.asarray(rows)
        return dataclasses.replace(
            self,
            start=self.start[rows],
            last=self.last[rows],
            actions=self.actions[rows],
            label_mask=self.label_mask[rows],
            oracle={k: v[rows] for k, v in self.oracle.items()},
            first=None if self.first is None else self.first[rows],
        )


def _read_part(data: LAMDataset, episodes: np.ndarray) -> Part:
    learn = data.read_numpy(episodes)
    length = data.episode_length
    n_episodes = len(episodes)
    obs = learn["obs"].reshape(n_episodes, length, *learn["obs"].shape[1:])
    final = learn["next_obs"].reshape(n_episodes, length, *learn["obs"].shape[1:])[:, -1:]
    frames = np.concatenate([obs, final], axis=1).reshape(-1, *learn["obs"].shape[1:])
    per_episode = np.arange(n_episodes)[:, None] * (length + 1)
    start = (per_episode + np.arange(length)).reshape(-1)
    last = np.repeat(per_episode[:, 0] + length, length)
    return Part(
        frames=frames,
        start=start,
        last=last,
        actions=learn["actions"],
        label_mask=learn["label_mask"],
        oracle=data.oracle(episodes),
        episodes=np.asarray(episodes),
        first=np.repeat(per_episode[:, 0], length),
    )


class DataSplit:
    """A dataset split by episode into train and held-out transitions, with the labelled
    subset of the train transitions a learner may use.

    dataset: a :class:`LAMDataset`, or a Minari id or path of one.
    held_out: share of episodes held out, in (0, 1); split seeded by ``seed``. The other
        settings are keywords.
    label_fraction: share of train transitions (or episodes) in the labelled subset, in
        [0, 1] (0: none), at most the dataset's labelled share; ``None``: every labelled
        train transition.
    eval_dataset: take the held-out part from this dataset's split instead (a model
        trained on one policy's data, scored on another's); same environment required.
    eval_transitions: keep at most this many held-out transitions (a seeded subset).
    trust_entry_point: let the dataset create an environment lam_envs does not register
        (:class:`LAMDataset`); only the pipeline's rollouts create one.
    label_unit: "transition" (default) or "episode": what ``label_fraction`` counts.
        "episode" labels whole train episodes (labels given per trajectory).
    """

    def __init__(
        self,
        dataset: LAMDataset | str | Path,
        held_out: float = 0.1,
        seed: int = 0,
        *,
        label_fraction: float | None = None,
        eval_dataset: LAMDataset | str | Path | None = None,
        eval_transitions: int | None = None,
        trust_entry_point: bool = False,
        label_unit: str = "transition",
    ):
        self.label_unit = check_choice("label_unit", label_unit, LABEL_UNITS)
        self.data = (
            dataset
            if isinstance(dataset, LAMDataset)
            else LAMDataset(dataset, trust_entry_point=trust_entry_point)
        )
        self.seed, self.held_out, self.label_fraction = seed, held_out, label_fraction
        self._eval = (eval_dataset, eval_transitions)
        train_episodes, test_episodes = self.data.split(held_out, seed=seed)
        _check_memory(self.data)
        self.train = _read_part(self.data, train_episodes)
        # What the dataset shows (its labels), kept to draw other subsets (with_labels).
        self._shown = (self.train.actions, self.train.label_mask)
        self.train = self._labelled_part(label_fraction)
        self.eval_data = self.data
        if eval_dataset is not None:
            self.eval_data = (
                eval_dataset
                if isinstance(eval_dataset, LAMDataset)
                else LAMDataset(eval_dataset, trust_entry_point=trust_entry_point)
            )
            if self.eval_data.env_id != self.data.env_id or tuple(
                self.eval_data.observation_shape
            ) != tuple(self.data.observation_shape):
                raise DatasetError(
                    f"eval dataset {self.eval_data.dataset_id!r} ({self.eval_data.env_id}, "
                    f"observations {tuple(self.eval_data.observation_shape)}) does not match "
                    f"the training data ({self.data.env_id}, "
                    f"{tuple(self.data.observation_shape)})"
                )
            test_episodes = self.eval_data.split(held_out, seed=seed)[1]
        self.test = _read_part(self.eval_data, test_episodes)
        if eval_transitions is not None and len(self.test) > eval_transitions:
            rng = numpy_rng(seed, Stream.EVAL_SUBSET)
            self.test = self.test.subset(
                np.sort(rng.choice(len(self.test), eval_transitions, replace=False))
            )

    def __reduce__(self):
        """Pickled as its arguments: a worker process re-reads the data from disk instead
        of receiving every array through a pipe."""
        eval_dataset, eval_transitions = self._eval
        if isinstance(eval_dataset, LAMDataset):
            eval_dataset = eval_dataset.data_path
        settings = dict(
            label_fraction=self.label_fraction,
            eval_dataset=eval_dataset,
            eval_transitions=eval_transitions,
            trust_entry_point=self.data.trust_entry_point,
            label_unit=self.label_unit,
        )
        return (_unpickle, ((self.data.data_path, self.held_out, self.seed), settings))

    def __repr__(self) -> str:
        return (
            f"DataSplit({self.data.dataset_id!r}, train={len(self.train)}, "
            f"held_out={len(self.test)}, labelled={int(self.train.label_mask.sum())})"
        )

    @property
    def discrete(self) -> bool:
        return self.data.discrete

    @property
    def kind(self) -> str:
        return self.data.kind

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            kind=self.data.kind,
            obs_shape=tuple(self.data.observation_shape),
            discrete=self.discrete,
            action_dim=_action_dim(self.data),
        )

    @property
    def labelled(self) -> int:
        """Number of train transitions in the labelled subset."""
        return int(self.train.label_mask.sum())

    def _labelled_part(self, label_fraction: float | None) -> Part:
        """The train part whose labelled subset is ``label_fraction`` of it, drawn from the
        labels the dataset shows (never from the oracle)."""
        actions, shown = self._shown
        # Each episode's transitions share the row of its final frame: an episode id.
        units = self.train.last if self.label_unit == "episode" else None
        mask = choose_labels(shown, label_fraction, self.seed, units)
        hidden = np.array(actions, copy=True)
        hidden[~mask] = -1 if self.discrete else np.nan
        return dataclasses.replace(self.train, actions=hidden, label_mask=mask)

    def with_labels(self, label_fraction: float | None, label_unit: str | None = None) -> DataSplit:
        """The same split with another labelled subset (frames shared, not re-read);
        ``label_unit`` None keeps this split's."""
        other = object.__new__(DataSplit)
        other.__dict__.update(self.__dict__)
        if label_unit is not None:
            other.label_unit = check_choice("label_unit", label_unit, LABEL_UNITS)
        other.train = other._labelled_part(label_fraction)
        other.label_fraction = label_fraction
        return other

    def training_view(self) -> DataSplit:
        """The split as a method under benchmark may see it: the train part with its
        visible actions and labelled subset, no held-out part and no oracle fields."""
        other = object.__new__(DataSplit)
        other.__dict__.update(self.__dict__)
        other.train = dataclasses.replace(self.train, oracle={})
        other.test = None
        return other

    def describe(self) -> str:
        d = self.data
        policy = d.collect_config.get("policy") if "lam_envs" in d.metadata else "?"
        text = (
            f"dataset {d.dataset_id} ({d.env_id} {d.env_kwargs}, policy {policy}); train "
            f"{len(self.train):,} transitions in {len(self.train.episodes)} episodes, "
            f"{self.labelled:,} labelled"
        )
        if self.eval_data is not d:
            text += f"; held-out episodes of {self.eval_data.dataset_id}"
        return text


def _action_dim(data: LAMDataset) -> int:
    """Number of actions (discrete) or d_a, from the metadata's action space (no
    environment is created: that would run the dataset's entry point)."""
    from minari.serialization import deserialize_space

    try:
        space = deserialize_space(data.metadata["action_space"])
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(
            f"dataset {data.dataset_id!r} is corrupt: metadata.json's action_space ({error})"
        ) from None
    return int(space.n) if data.discrete else int(np.prod(space.shape))


def _check_memory(data: LAMDataset) -> None:
    """Refuse a dataset whose observations would not fit in memory (read whole here)."""
    frames = len(data.episodes) * (data.episode_length + 1)
    need = frames * int(np.prod(data.observation_shape)) * 4
    try:
        import os

        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.75 * available:
        raise DatasetError(
            f"dataset {data.dataset_id!r} needs {need / 2**30:.1f} GiB of observations in "
            f"memory, and {available / 2**30:.1f} GiB are free; train on a subset of its "
            "episodes (collect a smaller dataset) or on a machine with more memory"
        )


# --------------------------------------------------------------------------------------------
# Batches for M copies trained together
# --------------------------------------------------------------------------------------------


def _unpickle(args: tuple, settings: dict) -> DataSplit:
    return DataSplit(*args, **settings)


class CopyBatches:
    """Seeded training batches for M copies, each from its own split, on one device.

    Copy m draws from its own generators (:class:`~lam_models.seeding.Stream` ``stream``,
    ``BATCHES`` by default, and ``LABELLED_BATCHES`` of ``seeds[m]``), so what it sees does
    not depend on the copies it is batched with. The row indices are drawn on the CPU (the
    same draws on every device) and sent to the device in one copy per batch; the data
    live on the device, moved there once: every split's frames in one tensor (copies that
    share a split share its frames), and every copy's transitions in one table, so a batch
    of all M copies is one gather per field.
    """

    def __init__(
        self,
        splits: Sequence[DataSplit],
        seeds: Sequence[int],
        device="cpu",
        stream: Stream = Stream.BATCHES,
    ):
        if len(splits) != len(seeds) or not splits:
            raise ValueError(f"give one seed per split: {len(seeds)} seeds, {len(splits)} splits")
        specs = {s.spec for s in splits}
        if len(specs) > 1:
            raise ValueError(f"copies trained together need the same kind of data; got {specs}")
        self.splits, self.seeds = list(splits), list(seeds)
        self.spec: DataSpec = specs.pop()
        self.device = torch.device(device)
        self.num_copies = len(splits)
        parts = [split.train for split in self.splits]
        first_frame: dict[int, int] = {}  # id(frames) -> its first row in the frame table
        distinct = []
        for part in parts:
            if id(part.frames) not in first_frame:
                first_frame[id(part.frames)] = sum(len(f) for f in distinct)
                distinct.append(part.frames)
        self.frames = torch.empty(
            (sum(len(f) for f in distinct), *self.spec.obs_shape), device=self.device
        )
        for frames in distinct:
            row = first_frame[id(frames)]
            self.frames[row : row + len(frames)] = torch.from_numpy(frames).float()
        # Transition n of copy m is row first_row[m] + n of these tables.
        base = [first_frame[id(p.frames)] for p in parts]
        self._sizes = [len(p) for p in parts]
        self._first_row = torch.tensor(np.cumsum([0, *self._sizes[:-1]]))[:, None]
        self._start = torch.cat([torch.from_numpy(p.start + base[m]) for m, p in enumerate(parts)])
        self._last = torch.cat([torch.from_numpy(p.last + base[m]) for m, p in enumerate(parts)])
        firsts = [
            None if p.first is None else torch.from_numpy(p.first + b)
            for p, b in zip(parts, base, strict=True)
        ]
        self._first = None if None in firsts else torch.cat(firsts).to(self.device)
        actions = torch.cat([torch.from_numpy(p.actions) for p in parts])
        self._actions = actions.long() if self.spec.discrete else actions.float()
        self._label_mask = torch.cat([torch.from_numpy(p.label_mask) for p in parts])
        for name in ("_start", "_last", "_actions", "_label_mask"):
            setattr(self, name, getattr(self, name).to(self.device))
        self._labelled = [torch.from_numpy(np.flatnonzero(p.label_mask)) for p in parts]
        self._batch_generators = [torch_generator(s, stream) for s in self.seeds]
        self._label_generators = [torch_generator(s, Stream.LABELLED_BATCHES) for s in self.seeds]

    @property
    def train_episodes(self) -> int:
        """Episodes in the first copy's train part (an epoch of the released Table 1 code
        draws one frame pair from each)."""
        return len(np.unique(self.splits[0].train.last))

    @property
    def has_labels(self) -> torch.Tensor:
        """(M,) bool: whether each copy has a labelled subset."""
        return torch.tensor([len(p) > 0 for p in self._labelled], device=self.device)

    def _gather(
        self, rows: list[torch.Tensor], offsets: list[torch.Tensor | None], history: int = 1
    ) -> Transitions:
        """The batch of each copy's transitions ``rows`` (M × (B,), on the CPU) with the
        look-ahead ``offsets`` (None: o_{t+1}); ``history`` > 1 stacks frames (:class:`Part`)."""
        index = torch.stack(rows) + self._first_row  # rows of the tables, (M, B)
        far = offsets[0] is not None
        if far:
            index = torch.stack([index, torch.stack(offsets)])
        index = to_device(index, self.device)  # one copy, not awaited
        rows_, j = (index[0], index[1]) if far else (index, None)
        start = self._start[rows_]
        look = self.frames.__getitem__
        if history > 1:
            first = None if self._first is None else self._first[rows_]
            look = lambda at: stack_frames(self.frames, at, first, history)  # noqa: E731
        obs, next_obs = look(start), look(start + 1)
        far_obs = next_obs if j is None else look(torch.minimum(start + j, self._last[rows_]))
        return Transitions(obs, next_obs, far_obs, self._actions[rows_], self._label_mask[rows_])

    def sample(
        self,
        batch_size: int,
        offset: int = 1,
        uniform_offset: bool = False,
        labelled_share: float = 0.0,
        history: int = 1,
    ) -> Transitions:
        """A batch of ``batch_size`` train transitions per copy, drawn with replacement.

        offset: the IDM's partner is o_{t+offset} (``far_obs``; 1: the next observation),
            or o_{t+j} with j uniform in 1..offset per example when ``uniform_offset``.
            Beyond the episode's end it is the episode's last observation.
        labelled_share: that share of each batch is drawn from the copy's labelled subset
            (rounded; none where a copy has no labels).
        history: h > 1 stacks each observation with the h − 1 before it (:class:`Part`).
        """
        rows, offsets = [], []
        n_labelled = round(labelled_share * batch_size)
        for size, pool, g in zip(self._sizes, self._labelled, self._batch_generators, strict=True):
            r = torch.randint(size, (batch_size,), generator=g)
            if n_labelled and len(pool):
                r[:n_labelled] = pool[torch.randint(len(pool), (n_labelled,), generator=g)]
            rows.append(r)
            offsets.append(_offsets(r, offset, uniform_offset, g))
        return self._gather(rows, offsets, history)

    def sample_labelled(
        self, batch_size: int, offset: int = 1, uniform_offset: bool = False, history: int = 1
    ) -> Transitions:
        """``batch_size`` transitions per copy from its labelled subset (with replacement).
        A copy without labels gets arbitrary rows with ``label_mask`` False."""
        rows, offsets = [], []
        for pool, g in zip(self._labelled, self._label_generators, strict=True):
            if len(pool):
                r = pool[torch.randint(len(pool), (batch_size,), generator=g)]
            else:
                r = torch.zeros(batch_size, dtype=torch.long)
            rows.append(r)
            offsets.append(_offsets(r, offset, uniform_offset, g))
        return self._gather(rows, offsets, history)


def _offsets(rows, offset: int, uniform: bool, generator) -> torch.Tensor | None:
    """Per-example look-ahead j (None: 1 for every example)."""
    if offset == 1:
        return None
    if uniform:
        return torch.randint(1, offset + 1, rows.shape, generator=generator)
    return torch.full(rows.shape, offset, dtype=torch.long)
