"""Collection in parallel: the data does not depend on the number of workers, the sharded
dataset reads everywhere (Minari, minari show, our loader, TorchRL) and moves, labels are
exact, and no kill leaves a dataset or a process behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest

from lam_envs.collect import CollectConfig, collect
from lam_envs.collect import shards as _shards
from lam_envs.utils import staging
from lam_models.data import LAMDataset

# three blocks of episodes each (a block: 16 episodes of 1,000 steps, or 32 of 500); long
# episodes keep the tests fast, since HDF5's cost is per episode
GRID = {"policy": "snaking", "episodes": 40, "episode_length": 1000, "label_fraction": 0.013}
# Blocks of 32, 32 and 1 episode(s), three to a batch: one process steps 65 envs at once,
# two step 64 and then 1. float32 BLAS products of (65, 64) and (1, 64) rows differ in
# their last bits on common CPUs (a one-row product takes another kernel), so the
# dynamics must compute each env's row on its own (lam_envs.envs.base.rowwise_matmul).
LINEAR = {
    "env": "LinearLAM-v0",
    "env_kwargs": {"d_o": 72, "d_a": 64, "d_b": 4, "sigma_exo": 1.0},
    "episodes": 65,
    "episode_length": 500,
    "label_fraction": 0.05,
    "label_unit": "episode",
    "seed": 7,
}


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of every episode, through the main file's links, episode by episode."""
    out = {}
    with h5py.File(path / "data" / "main_data.hdf5") as f:
        for key in f:
            out[f"{key}/seed"] = f[key].attrs["seed"]
            f[key].visititems(
                lambda name, obj, key=key: (
                    out.__setitem__(f"{key}/{name}", obj[()])
                    if isinstance(obj, h5py.Dataset)
                    else None
                )
            )
    return out


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("setting", [GRID, LINEAR], ids=["grid", "linear-episode-labels"])
def test_the_data_does_not_depend_on_the_number_of_workers(tmp_path, setting):
    config = CollectConfig(**setting)
    assert _shards.num_blocks(config) == 3
    if config.env == "LinearLAM-v0":  # the batches differ with the number of workers
        single = gym.make(config.env, **config.env_kwargs)
        per_block = _shards.episodes_per_block(config.episode_length)
        assert _shards._blocks_per_batch(single, config.episode_length, per_block) >= 3
    counts = (1, 2, 3) if config.label_unit == "transition" else (1, 2)  # a spawn costs ~1 s
    summaries = {
        n: collect(config, root=tmp_path / f"w{n}", progress=False, workers=n) for n in counts
    }
    arrays = {n: _arrays(s.path) for n, s in summaries.items()}
    for n in counts[1:]:
        _assert_same(arrays[1], arrays[n])
    for n, summary in summaries.items():
        shards = sorted(p.name for p in (summary.path / "data").glob("shard-*.hdf5"))
        assert len(shards) == n
        assert LAMDataset(summary.path).metadata["lam_envs"]["shards"] == n
    # exactly round(λ·N) labelled units, from the global count
    data = LAMDataset(summaries[2].path)
    mask = data.read_numpy()["label_mask"]
    if config.label_unit == "transition":
        assert mask.sum() == round(0.013 * 40 * 1000) == summaries[2].labelled
    else:
        per_episode = mask.reshape(65, 500)
        assert (per_episode.all(axis=1) | ~per_episode.any(axis=1)).all()
        assert per_episode.all(axis=1).sum() == round(0.05 * 65)
    # episode e is reset with the seed derived from (seed, e)
    with h5py.File(summaries[2].path / "data" / "main_data.hdf5") as f:
        base = _shards.env_seed_base(config.seed)
        last = config.episodes - 1
        assert [int(f[f"episode_{e}"].attrs["seed"]) for e in (0, last)] == [base, base + last]


@pytest.mark.slow
def test_a_sharded_dataset_reads_everywhere_and_can_be_moved(tmp_path, monkeypatch, load_example):
    config = CollectConfig(**GRID, full_labels=True, dataset_id="tests/sharded-v0")
    summary = collect(config, root=tmp_path / "a", progress=False, workers=2)
    before = _arrays(summary.path)
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "a", moved)  # links are relative: the dataset moves as a whole
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(moved))
    monkeypatch.chdir(tmp_path)  # another working folder: HDF5 resolves links by the file
    _assert_same(before, _arrays(moved / "tests" / "sharded-v0"))
    data = minari.load_dataset("tests/sharded-v0")
    assert data.total_episodes == 40 and data.total_steps == 40_000
    episodes = list(data.iterate_episodes())
    assert [e.id for e in episodes] == list(range(40))
    np.testing.assert_array_equal(episodes[39].observations, before["episode_39/observations"])
    assert data.recover_environment().spec.max_episode_steps == 1000
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "minari"), "show", "tests/sharded-v0"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "40000" in shown.stdout
    ours = LAMDataset("tests/sharded-v0")
    assert ours.num_transitions() == 40_000
    assert sum(len(b.obs) for b in ours.batches(1000, epochs=1)) == 40_000
    example = load_example("external_library")  # TorchRL's MinariExperienceReplay
    checks = example.main(["--dataset-id", "tests/sharded-v0", "--root", str(moved)])
    assert checks["LAMDataset"].ok and checks["workaround"].ok


def test_label_counts_are_exact_uniform_and_the_same_from_any_range():
    config = CollectConfig(episodes=1000, episode_length=50, label_fraction=0.01)
    n = _shards.num_blocks(config)
    whole = _shards.label_counts(config, range(n))
    assert whole.sum() == _shards.label_total(config) == 500
    parts = [_shards.label_counts(config, r) for r in _shards.split_blocks(n, 3)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # every unit is labelled with probability λ: count how often each is, over seeds
    counts = np.zeros(1000 * 50)
    for seed in range(60):
        c = CollectConfig(episodes=1000, episode_length=50, label_fraction=0.01, seed=seed)
        per_block = _shards.label_counts(c, range(n))
        counts += np.concatenate(
            [_shards.label_mask(c, b, int(k)).ravel() for b, k in enumerate(per_block)]
        )
    assert counts.sum() == 60 * 500
    per_block_share = np.add.reduceat(counts, np.arange(0, 50_000, 16_350)) / counts.sum()
    sizes = np.diff(np.append(np.arange(0, 50_000, 16_350), 50_000)) / 50_000
    np.testing.assert_allclose(per_block_share, sizes, atol=0.02)


def test_a_billion_transitions_can_be_labelled_and_two_billion_are_refused():
    config = CollectConfig(transitions=1e9, label_fraction=0.01)
    n = _shards.num_blocks(config)
    first = _shards.label_counts(config, range(3))
    last = _shards.label_counts(config, range(n - 2, n))
    assert first.sum() > 0 and last.sum() > 0  # about 164 per block of 16,400
    assert abs(first.mean() - 0.01 * 16_400) < 60
    with pytest.raises(ValueError, match="the label sampler chooses among at most"):
        CollectConfig(transitions=2e9, label_fraction=0.01)
    assert CollectConfig(transitions=2e9, label_fraction=0.01, label_unit="episode")
    assert CollectConfig(transitions=2e9, label_fraction=0.0)


# ---------------------------------------------------------------- kills


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(root: Path, dataset_id: str, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lam_envs.collect", "--quiet", "--root", str(root)]
    cmd += ["--dataset-id", dataset_id, "--env", "LinearLAM-v0", "--episodes", "100000", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_shards(root: Path, proc: subprocess.Popen, n: int) -> set[int]:
    """Wait until ``n`` shards are being written; return the worker pids."""
    deadline = time.time() + 90
    while time.time() < deadline:
        shards = list((root / staging.STAGING).glob("*/data/shard-*.hdf5"))
        if len(shards) >= n and all(s.stat().st_size > 500_000 for s in shards):
            return _children(proc.pid)
        if proc.poll() is not None:
            pytest.fail(f"the collector ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the collector never started writing")


def _assert_gone(pids: set[int]) -> None:
    deadline = time.time() + 20
    while any(_running(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _running(p)], "orphan worker processes"


def _assert_nothing_published(root: Path, dataset_id: str) -> None:
    assert not (root / dataset_id).exists()
    with pytest.raises(FileNotFoundError):
        minari.load_dataset(dataset_id)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killing_the_collector_leaves_no_dataset_and_no_process(
    tmp_path, monkeypatch, sig, workers
):
    root, dataset_id = tmp_path / "minari", "tests/interrupted-v0"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    proc = _start(root, dataset_id, "--workers", str(workers))
    children = _wait_for_shards(root, proc, workers)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    _assert_gone(children)
    _assert_nothing_published(root, dataset_id)
    area = root / staging.STAGING
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Traceback" not in err
        assert err.strip() == "interrupted: the dataset being written was removed"
        assert not any(area.iterdir())  # cleaned up on the way out
    else:  # a stale staging folder is left, invisible to minari, and removed next time
        assert any(area.iterdir())
        collect(CollectConfig(episodes=1, episode_length=2, dataset_id="tests/after-v0"), root)
        assert list(area.iterdir()) == []


@pytest.mark.slow
def test_a_killed_worker_stops_the_others_and_is_reported_in_one_line(tmp_path):
    root, dataset_id = tmp_path / "minari", "tests/worker-killed-v0"
    proc = _start(root, dataset_id, "--workers", "2")
    children = _wait_for_shards(root, proc, 2)
    workers = [p for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith("error: worker ") and "was killed by SIGKILL" in err, err
    assert len(err.strip().splitlines()) == 1
    _assert_gone(children)
    assert not (root / dataset_id).exists()
    assert list((root / staging.STAGING).iterdir()) == []


FAILING_WORKER = """
from lam_envs.collect import shards

_run_shard = shards.run_shard


def run_shard(config, blocks, path, *args, **kwargs):
    if path.name == "shard-00001.hdf5":
        raise OSError(28, "No space left on device")
    return _run_shard(config, blocks, path, *args, **kwargs)


shards.run_shard = run_shard
"""


@pytest.mark.slow
def test_a_worker_error_stops_the_others_and_is_reported_in_one_line(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAILING_WORKER)  # every process, workers too
    root, dataset_id = tmp_path / "minari", "tests/worker-error-v0"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "lam_envs.collect", "--quiet", "--root", str(root)]
    cmd += ["--dataset-id", dataset_id, "--episodes", "40", "--episode-length", "1000"]
    result = subprocess.run([*cmd, "--workers", "2"], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no space left on the device of ")  # one line
    assert result.stderr.count("\n") == 1 and "tests/worker-error-v0" in result.stderr
    assert not (root / dataset_id).exists()
    assert list((root / staging.STAGING).iterdir()) == []


# ---------------------------------------------------------------- Ray


@pytest.mark.slow
def test_ray_tasks_give_the_same_dataset_as_worker_processes(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token written under ~/.ray
    config = CollectConfig(**GRID)
    local = collect(config, root=tmp_path / "processes", progress=False, workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = collect(config, root=tmp_path / "ray", progress=False, workers=None, ray="")
    finally:
        ray.shutdown()
    assert on_ray.workers == "2 Ray task(s)"
    _assert_same(_arrays(local.path), _arrays(on_ray.path))
    assert LAMDataset(on_ray.path).metadata["lam_envs"]["shards"] == 2
