"""Concurrent runs lose nothing, and bad input or a failing machine gets one clear line.

Races are run with two real processes started together; a synchronisation point inside
the run (``RACE``) holds each process, for a few seconds at most, until the other has got
as far, so that the two really overlap where the old code checked and wrote. A full disk
is injected (``OSError(ENOSPC)``) where the bytes would be written.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lam_envs.utils import outputs as _outputs

# Runs MODULE.main(ARGS) with FUNCTION (a global of MODULE's, looked up when called) made
# to wait at a barrier folder until both processes are inside it (or 4 s have passed).
RACE = textwrap.dedent(
    """
    import importlib, os, sys, time
    barrier, module_name, function, *argv = sys.argv[1:]
    module = importlib.import_module(module_name)
    real = getattr(module, function)

    def waiting(*args, **kwargs):
        open(os.path.join(barrier, str(os.getpid())), "w").close()
        deadline = time.time() + 4
        while len(os.listdir(barrier)) < 2 and time.time() < deadline:
            time.sleep(0.02)
        return real(*args, **kwargs)

    setattr(module, function, waiting)
    sys.exit(module.main(argv))
    """
)


def _race(tmp_path: Path, module: str, function: str, *argvs: list[str]) -> list:
    """Start one process per argv at once; return their CompletedProcess-like results."""
    script = tmp_path / "race.py"
    script.write_text(RACE)
    barrier = tmp_path / "barrier"
    barrier.mkdir(exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(barrier), module, function, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        results.append((proc.returncode, out, err))
    return results


def _one_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]


# ---------------------------------------------------------------- 1. atomic claims


@pytest.mark.slow
def test_two_trainings_into_one_out_at_once_never_both_save(lam_datasets, tmp_path):
    out = tmp_path / "run"
    argv = ["linear", "--dataset", lam_datasets["linear_unlabelled"], "--steps", "20", "--quiet"]
    results = _race(
        tmp_path,
        "lam_models.train",
        "train_and_evaluate",
        [*argv, "--out", str(out)],
        [*argv, "--out", str(out)],
    )
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    saved = [out_ for code, out_, _ in results if code == 0]
    assert f"saved {out}/" in saved[0]
    _one_line(next(err for code, _, err in results if code == 2), str(out))
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "run.json", "training.png"]


@pytest.mark.slow
def test_two_benchmarks_into_one_out_at_once_never_both_write_a_card(
    lam_datasets, tmp_path, monkeypatch
):
    """Each has its own data root; the datasets are the session's, so no collect runs."""
    methods = tmp_path / "methods"
    methods.mkdir()
    (methods / "delta_method.py").write_text(
        "def train(data, seed):\n    return lambda o, o_next: (o_next - o).flatten(1)\n"
    )
    data = {"card": lam_datasets["linear_unlabelled"], "grid": lam_datasets["grid"]}
    (methods / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import lam_models.benchmark as b
            b.ensure_dataset = lambda recipe, root, **kw: {data!r}[recipe.split("-")[0]]
            """
        )
    )
    out = tmp_path / "card"
    argv = ["--method", "delta_method:train", "--suite", "tiny", "--seeds", "1", "--workers", "1"]
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(methods), os.environ.get("PYTHONPATH", "")])
    )
    results = _race(
        tmp_path,
        "lam_models.benchmark",
        "ensure_dataset",
        [*argv, "--out", str(out), "--data-root", str(tmp_path / "a")],
        [*argv, "--out", str(out), "--data-root", str(tmp_path / "b")],
    )
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    _one_line(next(err for code, _, err in results if code == 2), str(out))
    assert sorted(p.name for p in out.iterdir()) == ["cache", "card.csv", "card.md", "card.png"]


def test_a_claim_is_exclusive_released_and_broken_only_when_its_owner_is_dead(tmp_path):
    out = tmp_path / "out"
    with _outputs.claim_output_folder(out) as claimed:
        assert (claimed / _outputs.CLAIM).read_text().startswith(f"{os.getpid()}.")
        with pytest.raises(_outputs.FolderBusy, match=f"process {os.getpid()}"):
            with _outputs.claim_output_folder(out, overwrite=True):
                pass
    assert sorted(out.iterdir()) == []  # the claim is released
    out.rmdir()
    with pytest.raises(ZeroDivisionError), _outputs.claim_output_folder(out):
        raise ZeroDivisionError
    assert not out.exists()  # made by the claim, the run failed with nothing written
    # a claim left by a killed process of this host is broken by the next run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True).stdout.strip()  # fmt: skip
    out.mkdir()
    (out / _outputs.CLAIM).write_text(f"{dead}.0.deadbeef@{__import__('socket').gethostname()}")
    with _outputs.claim_output_folder(out):
        (out / "result").write_text("x")
    assert sorted(p.name for p in out.iterdir()) == ["result"]
    # another host's claim cannot be checked from here: kept, and the run refused
    (out / _outputs.CLAIM).write_text("1.0.cafe@another-host")
    with pytest.raises(_outputs.FolderBusy, match="another-host"):
        with _outputs.claim_output_folder(out, overwrite=True):
            pass
    assert (out / _outputs.CLAIM).exists()


# ---------------------------------------------------------------- 2. nested dataset ids


def _collect_cli(root: Path, dataset_id: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lam_envs.collect", "--quiet", "--root", str(root)]
    cmd += [f"--dataset-id={dataset_id}", "--episodes", "1", "--episode-length", "3", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_an_id_inside_another_dataset_or_around_one_is_refused(tmp_path):
    from lam_envs.collect import CollectConfig, collect

    root = tmp_path / "minari"
    tiny = {"episodes": 1, "episode_length": 3}
    collect(CollectConfig(**tiny, dataset_id="lam_envs/victim-v0"), root, progress=False)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with pytest.raises(ValueError, match="inside the folder of dataset 'lam_envs/victim-v0'"):
        collect(CollectConfig(**tiny, dataset_id="lam_envs/victim-v0/inner-v0"), root)
    deeper = CollectConfig(**tiny, dataset_id="lam_envs/victim-v0/data/x-v0")
    with pytest.raises(ValueError, match="inside the folder of dataset"):
        collect(deeper, root, overwrite=True)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    # a dataset nested by an older version: the outer one is never replaced (and deleted)
    nested = root / "lam_envs" / "outer-v0" / "inner-v0"
    collect(CollectConfig(**tiny, dataset_id="lam_envs/inner-v0"), root, progress=False)
    nested.parent.mkdir()
    os.rename(root / "lam_envs" / "inner-v0", nested)
    result = _collect_cli(root, "lam_envs/outer-v0", "--overwrite")
    _one_line(result.stderr, "holds dataset 'lam_envs/outer-v0/inner-v0'")
    assert result.returncode == 2 and (nested / "data" / "metadata.json").is_file()


# ---------------------------------------------------------------- 10. ids with empty names


@pytest.mark.parametrize("dataset_id", ["lam_envs/-v0", "lam_envs/--v0", "-x/a-v0", "ns/_-v0"])
def test_an_id_with_an_empty_or_dash_name_is_refused(tmp_path, dataset_id):
    from lam_envs.collect import CollectConfig

    with pytest.raises(ValueError, match="invalid dataset id"):
        CollectConfig(dataset_id=dataset_id)
    result = _collect_cli(tmp_path, dataset_id)
    assert result.returncode == 2
    _one_line(result.stderr, "invalid dataset id", "must start with a letter or digit")
    assert not (tmp_path / "lam_envs").exists()


# ---------------------------------------------------------------- 14. batch-free arithmetic


@pytest.mark.parametrize("d_a", [8, 64])
def test_each_linear_env_steps_the_same_bits_in_a_batch_of_any_size(d_a):
    """The cause of --workers 1 and 2 differing: a float32 matrix product whose rounding
    depended on the number of rows. Every env of a batch must step exactly like an env
    alone (a one-row product took another BLAS kernel than a batch's)."""
    import gymnasium as gym

    kwargs = {"d_o": 72, "d_a": d_a, "d_b": 8, "sigma_exo": 0.5, "sigma_iid": 0.1}
    kwargs["distractor_correlation"] = 0.3
    rng = np.random.default_rng(0)
    n, steps = 65, 20
    actions = rng.standard_normal((steps, n, d_a)).astype(np.float32)
    batch = gym.make_vec("LinearLAM-v0", num_envs=n, **kwargs)
    obs, _ = batch.reset(seed=100)
    batched = [obs]
    for t in range(steps):
        batched.append(batch.step(actions[t])[0])
    for sizes in ([1] * 3, [2, 63], [64, 1]):
        first = 0
        for size in sizes:
            part = gym.make_vec("LinearLAM-v0", num_envs=size, **kwargs)
            obs, _ = part.reset(seed=100 + first)
            np.testing.assert_array_equal(obs, batched[0][first : first + size])
            for t in range(steps):
                obs = part.step(actions[t, first : first + size])[0]
                np.testing.assert_array_equal(obs, batched[t + 1][first : first + size])
            first += size


# ---------------------------------------------------------------- 3. export --overwrite


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def test_export_overwrite_replaces_only_an_earlier_export_and_removes_dead_leftovers(
    lam_datasets, tmp_path, capsys
):
    pytest.importorskip("pyarrow")
    import json
    import socket

    from lam_envs.export import MARKER, main

    grid = lam_datasets["grid"]
    # a folder that merely holds a file of the marker's name (with other files) stays
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / MARKER).write_text(json.dumps({"source": "x"}))
    (forged / "thesis.tex").write_text("keep")
    assert main([grid, str(forged), "--overwrite"]) == 2
    _one_line(capsys.readouterr().err, "not a lam_envs export", "lists no files")
    assert (forged / "thesis.tex").read_text() == "keep"
    # an earlier export with a file added, or a file changed: kept too
    out = tmp_path / "out"
    assert main([grid, str(out)]) == 0
    capsys.readouterr()
    (out / "data" / "notes.txt").write_text("mine")
    assert main([grid, str(out), "--overwrite"]) == 2
    _one_line(capsys.readouterr().err, "holds files the export did not write", "notes.txt")
    (out / "data" / "notes.txt").unlink()
    parquet = next((out / "data").glob("*.parquet"))
    original = parquet.read_bytes()
    parquet.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # same size
    assert main([grid, str(out), "--overwrite"]) == 2
    _one_line(capsys.readouterr().err, "changed since the export wrote it")
    parquet.write_bytes(original)
    # leftovers of killed exports (this and an older naming), not those of live ones
    dead, host = _dead_pid(), socket.gethostname()
    leftovers = [f".out.partial-{dead}.0.0badc0de@{host}", f".other.partial-{dead}-0badc0de"]
    leftovers.append(f".out.old-{dead}.0.0badc0de@{host}")
    live = f".out.partial-{os.getpid()}.0.0badc0de@{host}"
    for name in [*leftovers, live]:
        (tmp_path / name / "data").mkdir(parents=True)
    assert main([grid, str(out), "--overwrite"]) == 0  # an exact earlier export: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["forged", "out", live])


# ---------------------------------------------------------------- 11. --device


@pytest.mark.parametrize("device", ["cpu:7", "mps", "xla", "meta", "cuda:99", "gpu", ""])
def test_a_device_this_torch_cannot_use_is_refused_in_one_line(
    lam_datasets, tmp_path, capsys, device
):
    import torch

    from lam_models.lams.base import resolve_device
    from lam_models.train import main

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("Metal is available here")
    with pytest.raises(ValueError, match="device"):
        resolve_device(device)
    out = tmp_path / "run"
    args = ["linear", "--dataset", lam_datasets["linear_unlabelled"], "--steps", "5", "--quiet"]
    assert main([*args, "--device", device, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "device")
    assert not out.exists()
    assert resolve_device("cpu:0") == torch.device("cpu")  # the one CPU index there is
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------- 8. evaluate's input


def _delta(o, o_next):
    return (o_next - o).flatten(1)


BAD_LATENTS = [
    (lambda o, on: 1.0, TypeError, "returned float"),
    (lambda o, on: None, TypeError, "returned NoneType"),
    (lambda o, on: (x for x in o), TypeError, "returned generator"),
    (lambda o, on: {"z": o}, TypeError, "returned dict"),
    (lambda o, on: np.float64(1.0), TypeError, "returned float64"),
    (lambda o, on: _delta(o, on)[:1], ValueError, "returned 1 latents for a chunk"),
    (lambda o, on: _delta(o, on).to(__import__("torch").complex64), ValueError, "complex"),
    (lambda o, on: _delta(o, on).numpy() * 1j, ValueError, "complex"),
    (lambda o, on: np.array([["a"]] * len(o)), TypeError, "numbers"),
]


@pytest.mark.parametrize(("latent_fn", "error", "message"), BAD_LATENTS)
def test_evaluate_refuses_latents_that_are_not_a_real_array_per_transition(
    lam_datasets, latent_fn, error, message
):
    import lam_models

    with pytest.raises(error, match=message):
        lam_models.evaluate(latent_fn, lam_datasets["grid"])


@pytest.mark.parametrize("batch_size", [0, -1, float("nan"), 2.5, "8", None])
def test_evaluate_refuses_a_batch_size_that_is_not_a_positive_integer(lam_datasets, batch_size):
    import lam_models

    with pytest.raises(ValueError, match="batch_size must be"):
        lam_models.evaluate(_delta, lam_datasets["grid"], batch_size=batch_size)


def test_evaluate_takes_one_nuisance_name_and_names_those_that_exist(lam_datasets):
    import lam_models

    one = lam_models.evaluate(_delta, lam_datasets["grid"], nuisance="noise")
    assert (
        one["nmse_noise"]
        == lam_models.evaluate(_delta, lam_datasets["grid"], nuisance=("noise",))["nmse_noise"]
    )
    with pytest.raises(ValueError, match=r"unknown nuisance 'nois'.* oracle fields \['action'"):
        lam_models.evaluate(_delta, lam_datasets["grid"], nuisance="nois")
    with pytest.raises(TypeError, match="nuisance must be oracle field names"):
        lam_models.evaluate(_delta, lam_datasets["grid"], nuisance=[1])


# ---------------------------------------------------------------- 4. a full disk


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["model.pt", "training.png"])
def test_a_full_disk_while_saving_a_run_leaves_nothing_and_blocks_no_rerun(
    lam_datasets, tmp_path, monkeypatch, capsys, where
):
    import matplotlib.figure
    import torch

    from lam_models.train import main

    out = tmp_path / "run"
    args = ["linear", "--dataset", lam_datasets["linear_unlabelled"], "--steps", "5", "--quiet"]
    with monkeypatch.context() as patch:
        if where == "model.pt":
            patch.setattr(torch, "save", _no_space)
        else:
            patch.setattr(matplotlib.figure.Figure, "savefig", _no_space)
        assert main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    _one_line(err, "no space left on the device", where)
    assert "Errno" not in err
    assert not out.exists()  # no model.pt.tmp, no half-saved run
    assert main([*args, "--out", str(out)]) == 0  # the rerun is not blocked
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "run.json", "training.png"]


def test_a_full_disk_during_collect_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """HDF5 reports ENOSPC as a ValueError or RuntimeError of many lines (measured on a
    full tmpfs), from a write and again from closing the file during cleanup."""
    from lam_envs.collect import main
    from lam_envs.collect import writer as _minari_writer

    hdf5_message = (
        "Unable to synchronously create group (file write failed: time = now\n, filename = "
        "'x.hdf5', file descriptor = 5, errno = 28, error message = 'No space left on device')"
    )

    def full(*args, **kwargs):
        raise ValueError(hdf5_message)

    def close_fails(self):
        raise RuntimeError(hdf5_message.replace("Unable", "Disable slist on flush"))

    monkeypatch.setattr(_minari_writer.ShardWriter, "write_episodes", full)
    monkeypatch.setattr(_minari_writer.DatasetStaging, "_close_main", close_fails)
    root = tmp_path / "root"
    args = ["--quiet", "--root", str(root), "--dataset-id", "tests/full-v0"]
    assert main([*args, "--episodes", "2", "--episode-length", "5"]) == 1
    _one_line(capsys.readouterr().err, "no space left on the device", "tests/full-v0")
    assert not (root / "tests" / "full-v0").exists()
    assert list((root / ".lam-envs-staging").iterdir()) == []


def test_the_free_space_refusal_speaks_in_units_that_show_the_sizes():
    from lam_envs.utils.outputs import format_bytes

    assert format_bytes(0) == "0 bytes"
    assert format_bytes(3 * 2**20) == "3.0 MiB"
    assert format_bytes(46.6 * 2**20) == "46.6 MiB"
    assert format_bytes(5 * 2**40) == "5.0 TiB"
    assert format_bytes(2047) == "2.0 KiB"


# ---------------------------------------------------------------- 5. path parts over 255 bytes

LONG = "x" * 256


def _commands(lam_datasets, tmp_path) -> list[tuple[str, list[str]]]:
    linear = lam_datasets["linear"]
    train = ["lam_models.train", "linear", "--steps", "5", "--quiet"]
    bench = ["lam_models.benchmark", "--method", "linear", "--suite", "tiny", "--seeds", "1"]
    pipe = ["lam_models.pipeline", "--lam", "linear", "--quick"]
    return [
        ("--out", [*train, "--dataset", linear, "--out", str(tmp_path / LONG / "run")]),
        ("dataset", [*train, "--dataset", str(tmp_path / LONG), "--out", str(tmp_path / "r")]),
        ("--out", [*pipe, "--dataset", linear, "--out", str(tmp_path / LONG)]),
        ("dataset", [*pipe, "--dataset", f"{tmp_path}/{LONG}", "--out", str(tmp_path / "p")]),
        ("--out", [*bench, "--out", str(tmp_path / LONG)]),
        ("--data-root", [*bench, "--out", str(tmp_path / "b"), "--data-root", f"/{LONG}"]),
        ("--root", ["lam_envs.collect", "--root", str(tmp_path / LONG), "--episodes", "1"]),
        ("OUT", ["lam_envs.export", linear, str(tmp_path / LONG)]),
        ("dataset", ["lam_envs.export", str(tmp_path / LONG / "d"), str(tmp_path / "e")]),
    ]


def test_a_path_part_over_255_bytes_is_one_line_in_every_command(lam_datasets, tmp_path, capsys):
    import importlib

    for what, (module, *argv) in _commands(lam_datasets, tmp_path):
        assert importlib.import_module(module).main(argv) == 2, what
        _one_line(capsys.readouterr().err, what, "255 bytes")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made


# ---------------------------------------------------------------- 6. a user method's signature


def test_a_method_that_is_not_train_data_seed_is_refused_naming_its_signature(tmp_path, capsys):
    from lam_models import benchmark

    out = tmp_path / "card"
    for spec in ("math:sqrt", "json:dumps", "os:getcwd"):
        assert benchmark.main(["--method", spec, "--suite", "tiny", "--out", str(out)]) == 2
        _one_line(capsys.readouterr().err, spec, "train(data, seed)")
    assert not out.exists()
    with pytest.raises(ValueError, match=r"\(x\) cannot be called as train\(data, seed\)"):
        benchmark.resolve_method(lambda x: x, steps=1)
    assert benchmark.resolve_method(lambda data, seed, device="cpu": None, steps=1)
    assert benchmark.resolve_method(lambda *args: None, steps=1)
    with pytest.raises(ValueError, match="returned 3, not a function latent_fn"):
        benchmark._call(lambda data, seed: 3, None, 0, "cpu")


# ---------------------------------------------------------------- 7. num_envs


@pytest.mark.parametrize("env_id", ["LinearLAM-v0", "GridLAM-v0", "GridLAM-Distracting-v0"])
def test_a_vector_env_of_a_billion_envs_is_refused_naming_the_bound(env_id):
    import gymnasium as gym

    from lam_envs.envs.base import NUM_ENVS_MAX

    with pytest.raises(ValueError, match=r"num_envs must be <= 16,777,216 \(2\*\*24\)"):
        gym.make_vec(env_id, num_envs=10**9)
    assert gym.make_vec(env_id, num_envs=3).num_envs == 3
    assert NUM_ENVS_MAX == 2**24


def test_a_vector_env_that_does_not_fit_in_memory_is_a_value_error(monkeypatch):
    import gymnasium as gym

    from lam_envs.envs.linear import LinearDynamics

    def no_memory(self, num_envs, **params):
        raise MemoryError

    monkeypatch.setattr(LinearDynamics, "__init__", no_memory)
    with pytest.raises(ValueError, match="num_envs = 1,000,000 does not fit in memory"):
        gym.make_vec("LinearLAM-v0", num_envs=10**6)


# ---------------------------------------------------------------- 9. a shared new data root

SHARED_ROOT = textwrap.dedent(
    """
    import os, sys, time
    from lam_envs.utils import staging
    barrier, root = sys.argv[1:]
    real = staging.publish

    def waiting(*args, **kwargs):  # both have collected: now both publish
        open(os.path.join(barrier, str(os.getpid())), "w").close()
        deadline = time.time() + 20
        while len(os.listdir(barrier)) < 2 and time.time() < deadline:
            time.sleep(0.02)
        return real(*args, **kwargs)

    staging.publish = waiting
    from lam_models.recipes import ensure_dataset
    print(ensure_dataset("linear-other-agents-2p0", root, episodes=2))
    """
)


@pytest.mark.slow
def test_two_benchmarks_building_one_new_data_root_both_end_well(tmp_path):
    """What two benchmarks sharing a new --data-root do: build each setting's dataset."""
    from lam_envs.utils import staging
    from lam_models.data import LAMDataset

    script, barrier, root = tmp_path / "shared.py", tmp_path / "barrier", tmp_path / "root"
    script.write_text(SHARED_ROOT)
    barrier.mkdir()
    procs = [
        subprocess.Popen([sys.executable, str(script), str(barrier), str(root)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    paths = {out.strip() for _, out, _ in results}
    assert len(paths) == 1 and len(os.listdir(barrier)) == 2  # both collected, one published
    assert LAMDataset(paths.pop()).num_transitions() == 2 * 200
    assert staging.unpublished(root) == []  # the loser's copy of the same data is gone


# ---------------------------------------------------------------- 12. reset options


@pytest.mark.parametrize("env_id", ["LinearLAM-v0", "GridLAM-v0", "GridLAM-Shake-v0"])
@pytest.mark.parametrize("options", ["junk", 5, ["reset_mask"], ("a", 1)])
def test_reset_options_that_are_not_a_dict_are_refused(env_id, options):
    import gymnasium as gym

    for env in (gym.make(env_id), gym.make_vec(env_id, num_envs=2)):
        with pytest.raises(TypeError, match="options must be None or a dict"):
            env.reset(seed=0, options=options)
        env.reset(seed=0, options={})  # a dict is fine
    # Gymnasium's own SyncVectorEnv reads options itself first; a TypeError either way
    with pytest.raises(TypeError):
        gym.make_vec(env_id, num_envs=2, vectorization_mode="sync").reset(options=options)


# ---------------------------------------------------------------- 13. batches


def test_batches_larger_than_the_data_are_refused_never_an_empty_or_endless_loop(lam_datasets):
    from lam_models.data import LAMDataset

    data = LAMDataset(lam_datasets["linear_unlabelled"])  # 40 episodes of 5 steps: 200
    for epochs in (1, 3, None):
        with pytest.raises(ValueError, match="batch_size = 201 is more than the 200 trans"):
            next(data.batches(201, epochs=epochs))
    with pytest.raises(ValueError, match="than the 10 transitions of the 2 episode"):
        next(data.batches(11, episodes=data.episodes[:2], epochs=None))
    with pytest.raises(ValueError, match="at least one episode"):
        next(data.batches(1, episodes=[]))
    assert len(list(data.batches(200, epochs=2))) == 2
    endless = data.batches(150, epochs=None)  # leftovers carried, memory bounded
    assert all(len(next(endless).obs) == 150 for _ in range(10))


# ---------------------------------------------------------------- 15. collect --clean


def test_clean_reports_a_stale_entry_it_cannot_remove_as_kept_every_time(
    tmp_path, monkeypatch, capsys
):
    import shutil
    import socket

    from lam_envs.collect import main
    from lam_envs.utils import staging

    root = tmp_path / "root"
    area = root / staging.STAGING
    dead, host = _dead_pid(), socket.gethostname()
    (area / f"{dead}.0.aaaa@{host}").mkdir(parents=True)
    (area / f"{dead}.0.bbbb@{host}").write_text("a file, not a folder")  # also removed
    monkeypatch.setattr(shutil, "rmtree", lambda path, **kw: None)  # cannot remove folders
    for removed in (1, 0):  # the file goes; the folder stays, and is said to stay
        assert main(["--clean", "--root", str(root)]) == 0
        out = capsys.readouterr().out
        assert f"kept      {area / f'{dead}.0.aaaa@{host}'} (stale, but cannot be removed" in out
        assert f"removed {removed} stale staging folder(s)" in out.splitlines()[-1]
    monkeypatch.undo()
    assert main(["--clean", "--root", str(root)]) == 0
    assert "removed 1 stale staging folder(s)" in capsys.readouterr().out
    assert list(area.iterdir()) == []


def test_a_pipeline_into_a_folder_another_run_holds_is_refused_at_any_stage(
    lam_datasets, tmp_path, capsys
):
    from lam_models.pipeline import main

    out = tmp_path / "run"
    with _outputs.claim_output_folder(out):  # as a live run elsewhere holds it
        (out / "config.json").write_text("{}")
        for stage in ("all", "bc"):
            args = ["--dataset", lam_datasets["grid"], "--quick", "--stage", stage]
            assert main([*args, "--out", str(out)]) == 2
            _one_line(capsys.readouterr().err, "being written by another run", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_a_full_disk_while_saving_a_policy_leaves_no_temporary_file(tmp_path, monkeypatch):
    import torch

    from lam_envs.utils.outputs import DiskFull
    from lam_models.pipeline.bc import Policy, load_policy, save_policy

    policy = Policy(1, 4, 2, 8, "regression")
    path = tmp_path / "policy.pt"
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", _no_space)
        with pytest.raises(DiskFull, match="no space left on the device"):
            save_policy(path, policy)
    assert list(tmp_path.iterdir()) == []
    save_policy(path, policy)  # nothing blocks a rerun
    assert load_policy(path).spec() == policy.spec()
