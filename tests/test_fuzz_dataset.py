"""Fuzz (issue 25): a small collected dataset corrupted in random ways (truncated files,
arrays of another dtype or shape, NaN and infinite values, out-of-range actions, links
and symlinks in and out of its folder, episode attributes, metadata values) is either
read as it was, array for array, or refused with the package's ``DatasetError``: never a
different array, never another exception."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lam_envs.collect import CollectConfig, collect
from lam_envs.verify import verify
from lam_models.data import DatasetError, LAMDataset

EPISODES = 6
#: Examples per dataset kind: a few seconds by default; LAM_FUZZ_EXAMPLES=2000 searches longer.
EXAMPLES = int(os.environ.get("LAM_FUZZ_EXAMPLES", "60"))
METADATA_FIELDS = [
    ("total_episodes",),
    ("total_steps",),
    ("dataset_id",),
    ("data_format",),
    ("dataset_size",),
    ("observation_space",),
    ("action_space",),
    ("env_spec",),
    ("lam_envs",),
    ("lam_envs", "contract_version"),
    ("lam_envs", "package_version"),
    ("lam_envs", "labelled"),
    ("lam_envs", "shards"),
    ("lam_envs", "episodes_per_block"),
    ("lam_envs", "collect"),
    *(
        ("lam_envs", "collect", key)
        for key in (
            "episodes",
            "episode_length",
            "label_fraction",
            "seed",
            "full_labels",
            "label_unit",
            "epsilon",
            "chi",
            "policy",
            "env",
            "preset",
            "env_kwargs",
            "transitions",
            "dataset_id",
        )
    ),
]
METADATA_VALUES = [-5, -1, 0, 1, 2, 2.5, 1e40, 1e308, float("nan"), float("inf"), True, None]
METADATA_VALUES += ["x", "", "1", [], {}, "delete"]
DTYPES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"]
LINKS = [
    "outside",
    "relative outside",
    "passwd",
    "missing",
    "soft to another",
    "external to another",
    "inner external",
    "inner soft",
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{kind: (pristine dataset, its arrays as every reader returns them, array keys)}."""
    root = tmp_path_factory.mktemp("fuzz")
    configs = {
        "grid": CollectConfig(
            policy="snaking", epsilon=0.3, episodes=EPISODES, episode_length=8, label_fraction=0.4
        ),
        "linear": CollectConfig(
            env="LinearLAM-v0",
            env_kwargs={"d_o": 4, "d_a": 2, "d_b": 2},
            episodes=EPISODES,
            episode_length=4,
            label_fraction=0.5,
        ),
    }
    result = {}
    for kind, config in configs.items():
        path = collect(config, root=root, progress=False).path
        result[kind] = (path, _read(path), _array_keys(path))
    return result


def _array_keys(path: Path) -> list[str]:
    """The arrays of an episode, as paths in its group (observations, infos/oracle/q, ...)."""
    keys: list[str] = []
    with h5py.File(path / "data" / "shard-00000.hdf5", "r") as f:
        f["episode_0"].visititems(
            lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None
        )
    return sorted(keys)


def _read(path: Path) -> dict[str, np.ndarray]:
    data = LAMDataset(path)
    try:
        arrays = {f"learn/{k}": v for k, v in data.read_numpy().items()}
        arrays |= {f"oracle/{k}": v for k, v in data.oracle().items()}
        arrays |= {f"outcomes/{k}": v for k, v in data.outcomes().items()}
        arrays["episode 3/observations"] = data.read_numpy(np.array([3]))["obs"]
    finally:
        data.close()
    return arrays


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype
        and a[k].shape == b[k].shape
        and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
        for k in a
    )


def _corruption(keys: list[str]):
    episode = st.integers(0, EPISODES - 1)
    key = st.sampled_from(keys)
    return st.one_of(
        st.tuples(
            st.just("truncate"),
            st.sampled_from(["main_data.hdf5", "shard-00000.hdf5", "metadata.json"]),
            st.floats(0, 0.999),
        ),
        st.tuples(st.just("dtype"), episode, key, st.sampled_from(DTYPES)),
        st.tuples(
            st.just("shape"),
            episode,
            key,
            st.sampled_from(["drop row", "add row", "flatten", "add axis", "scalar", "empty"]),
        ),
        st.tuples(
            st.just("value"),
            episode,
            key,
            st.sampled_from([np.nan, np.inf, -np.inf, 99, -7]),
            st.floats(0, 0.999),
        ),
        st.tuples(st.just("link"), episode, st.sampled_from(LINKS), episode),
        st.tuples(
            st.just("symlink"),
            st.sampled_from(["main_data.hdf5", "shard-00000.hdf5", "metadata.json"]),
            st.booleans(),
        ),
        st.tuples(
            st.just("metadata"), st.sampled_from(METADATA_FIELDS), st.sampled_from(METADATA_VALUES)
        ),
        st.tuples(
            st.just("attribute"),
            episode,
            st.sampled_from(["total_steps", "id"]),
            st.sampled_from([-1, 0, 1, 3, 7, 8, 2.0, "8"]),
        ),
    )


def _corrupt(dataset: Path, outside: Path, op: tuple, bounded: bool) -> None:
    """Apply one corruption ``op`` (see ``_corruption``); ``bounded``: the observation
    space is a finite box (the grid's [0, 1]), so an out-of-range value can be told."""
    data = dataset / "data"
    shard = data / "shard-00000.hdf5"
    kind = op[0]
    if kind == "truncate":
        path = data / op[1]
        if path.is_file() and not path.is_symlink():
            path.write_bytes(path.read_bytes()[: int(op[2] * path.stat().st_size)])
        return
    if kind == "symlink":
        path = data / op[1]
        if not path.is_file():
            return
        target = outside / op[1] if op[2] else data / f"moved-{op[1]}"
        if not target.exists():
            shutil.copy(path, target)
        path.unlink()
        path.symlink_to(target)
        return
    if kind == "metadata":
        path = data / "metadata.json"
        try:
            meta = json.loads(path.read_text())
            parent = meta
            for part in op[1][:-1]:
                parent = parent[part]
            if op[2] == "delete":
                parent.pop(op[1][-1], None)
            else:
                parent[op[1][-1]] = op[2]
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # the metadata is already broken there
        path.write_text(json.dumps(meta))
        return
    try:
        if kind == "link" and op[2] in ("outside", "relative outside", "passwd", "missing"):
            target = {
                "outside": str(outside / "shard-00000.hdf5"),
                "relative outside": "../" * 16 + str(outside / "shard-00000.hdf5").lstrip("/"),
                "passwd": "/etc/passwd",
                "missing": "not-here.hdf5",
            }[op[2]]
            with h5py.File(data / "main_data.hdf5", "a") as f:
                del f[f"episode_{op[1]}"]
                f[f"episode_{op[1]}"] = h5py.ExternalLink(target, f"/episode_{op[1]}")
            return
        if kind == "link" and op[2] in ("soft to another", "external to another"):
            with h5py.File(data / "main_data.hdf5", "a") as f:
                del f[f"episode_{op[1]}"]
                f[f"episode_{op[1]}"] = (
                    h5py.SoftLink(f"/episode_{op[3]}")
                    if op[2] == "soft to another"
                    else h5py.ExternalLink("shard-00000.hdf5", f"/episode_{op[3]}")
                )
            return
        with h5py.File(shard, "a") as f:
            group = f[f"episode_{op[1]}"]
            if kind == "link":  # inside an episode
                del group["actions"]
                group["actions"] = (
                    h5py.ExternalLink(
                        str(outside / "shard-00000.hdf5"), f"/episode_{op[1]}/actions"
                    )
                    if op[2] == "inner external"
                    else h5py.SoftLink(f"/episode_{op[3]}/actions")
                )
                return
            if kind == "attribute":
                group.attrs[op[2]] = op[3]
                return
            array = group[op[2]][()]
            if kind == "dtype":
                with np.errstate(invalid="ignore"):  # NaN to integers: whatever numpy makes
                    array = array.astype(op[3])
            elif kind == "shape":
                array = {
                    "drop row": lambda a: a[:-1],
                    "add row": lambda a: np.concatenate([a, a[-1:]]),
                    "flatten": lambda a: a.reshape(len(a), -1),
                    "add axis": lambda a: a[..., None],
                    "scalar": lambda a: a.reshape(-1)[0],
                    "empty": lambda a: a[:0],
                }[op[3]](array)
            elif kind == "value":
                flat = array.reshape(-1)
                at = int(op[4] * flat.size)
                finite = np.isfinite(op[3])
                if array.dtype.kind == "f" and (
                    not finite or (bounded and op[2] == "observations")
                ):
                    flat[at] = op[3]  # (a finite value in an unbounded space cannot be told)
                elif array.dtype.kind == "i" and "action" in op[2] and np.isfinite(op[3]):
                    flat[at] = op[3]
                else:
                    return  # integers of no known range (positions): nothing to tell
            del group[op[2]]
            group[op[2]] = array
    except (OSError, KeyError, IndexError, ValueError, TypeError, RuntimeError):
        return  # an earlier corruption broke the file or the array there (a link loop)


@pytest.mark.parametrize("kind", ["grid", "linear"])
def test_a_corrupt_dataset_reads_as_it_was_or_raises_dataset_error(sources, kind):
    path, reference, keys = sources[kind]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(_corruption(keys), min_size=1, max_size=3))
    def check(ops):
        with tempfile.TemporaryDirectory() as tmp:
            copy, outside = Path(tmp, "dataset"), Path(tmp, "outside")
            shutil.copytree(path, copy)
            outside.mkdir()
            shutil.copy(path / "data" / "shard-00000.hdf5", outside)
            for op in ops:
                _corrupt(copy, outside, op, bounded=kind == "grid")
            try:
                arrays = _read(copy)
            except DatasetError:
                pass
            else:
                assert _same(arrays, reference), f"{ops} read different arrays"
            try:
                verify(copy)
            except DatasetError:
                pass
            else:  # what verify passes, every reader reads as it was
                assert _same(_read(copy), reference), f"{ops} verified, yet reads differ"

    check()


def test_the_fuzz_can_fail(sources, tmp_path):
    """A corruption the contract cannot tell (a finite observation changed to another
    finite value inside the space) reads a different array: the comparison is live."""
    path, reference, _ = sources["linear"]
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    with h5py.File(copy / "data" / "shard-00000.hdf5", "a") as f:
        obs = f["episode_3/observations"][()]
        obs[0, 0] += 1
        del f["episode_3/observations"]
        f["episode_3/observations"] = obs
    assert not _same(_read(copy), reference)
    assert os.path.isdir(copy)
