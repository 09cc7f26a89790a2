"""python -m lam_envs.export: Parquet for Hugging Face datasets, streamed, atomic."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SNAKING, collect_into

from lam_envs import export as export_module
from lam_envs.dataset import Dataset
from lam_envs.export import MARKER, export, main
from lam_models.data import LAMDataset


def to_numpy(column) -> np.ndarray:
    """An Arrow column of nested fixed-size lists as one (N, *shape) array."""
    array, shape = column.combine_chunks(), []
    while pa.types.is_fixed_size_list(array.type):
        shape.append(array.type.list_size)
        array = array.flatten()
    return array.to_numpy(zero_copy_only=False).reshape(-1, *shape)


@pytest.fixture(scope="module")
def datasets_(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    linear = dict(env="LinearLAM-v0", preset="other_agents", seed=3)
    return {
        "grid": collect_into(root, **SNAKING, episodes=9, episode_length=20, label_fraction=0.2),
        "linear": collect_into(root, **linear, episodes=5, episode_length=8),
    }


@pytest.mark.parametrize("kind", ["grid", "linear"])
def test_round_trip_through_hugging_face_datasets(datasets_, tmp_path, kind):
    import datasets

    source = LAMDataset(datasets_[kind])
    out = tmp_path / "export"
    assert main([str(datasets_[kind]), str(out), "--chunk-transitions", "40"]) == 0
    loaded = datasets.load_dataset("parquet", data_dir=str(out / "data"), split="train")
    rows = loaded.with_format("numpy")[:]
    learn, oracle, outcomes = source.read_numpy(), source.oracle(), source.outcomes()
    n, length = source.num_transitions(), source.episode_length
    assert len(loaded) == n
    np.testing.assert_array_equal(rows["episode"], np.repeat(source.episodes, length))
    np.testing.assert_array_equal(rows["step"], np.tile(np.arange(length), len(source.episodes)))
    expected = {
        "obs": learn["obs"],
        "next_obs": learn["next_obs"],
        "action": learn["actions"],
        "label_mask": learn["label_mask"],
        **outcomes,
        **{f"oracle_{k}": v for k, v in oracle.items()},
    }
    assert set(rows) == set(expected) | {"episode", "step"}
    table = loaded.with_format("arrow")[:]
    for name, value in expected.items():  # same values, dtypes and shapes (NaN sentinels too)
        assert rows[name].shape == value.shape, name  # datasets' numpy: float64 -> float32
        exact = to_numpy(table[name])
        assert exact.dtype == value.dtype, name
        np.testing.assert_array_equal(exact, value, err_msg=name)
    hidden = ~rows["label_mask"]
    assert hidden.any() and rows["label_mask"].any()
    if kind == "grid":
        assert (rows["action"][hidden] == -1).all()
    else:
        assert np.isnan(rows["action"][hidden]).all()
    info = json.loads((out / MARKER).read_text())
    assert info["source_fingerprint"] == source.fingerprint and info["transitions"] == n
    # the same folder also loads by its name (data/train-*.parquet is the hub's layout)
    assert len(datasets.load_dataset(str(out), split="train")) == n


def test_streams_in_chunks_and_shards(datasets_, tmp_path, monkeypatch):
    read_sizes = []
    read = Dataset.read_numpy

    def recording(self, episodes=None):
        read_sizes.append(len(episodes))
        return read(self, episodes)

    monkeypatch.setattr(Dataset, "read_numpy", recording)
    out = export(datasets_["grid"], tmp_path / "e", chunk_transitions=40, shard_transitions=80)
    assert max(read_sizes) == 2  # 40 transitions = 2 episodes of 20 at a time, never more
    files = sorted((out / "data").glob("*.parquet"))
    assert [f.name for f in files] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    groups = [pq.ParquetFile(f).metadata.num_row_groups for f in files]
    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert groups == [2, 2, 1] and rows == [80, 80, 20]
    # by default a chunk is sized by bytes: this small dataset is one chunk, one file
    read_sizes.clear()
    export(datasets_["grid"], tmp_path / "default")
    assert read_sizes == [1, 9]  # one episode to size the rows, then everything


def test_refuses_to_overwrite_and_leaves_nothing_half_written(
    datasets_, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    export(datasets_["grid"], out)
    before = sorted(p.name for p in out.rglob("*"))
    assert main([str(datasets_["linear"]), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err
    # a folder that is not an export is never replaced, even with --overwrite
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main([str(datasets_["grid"]), str(other), "--overwrite"]) == 2
    assert "not a lam_envs export" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep"

    # interrupted on the second chunk: the earlier export stays as it was, no debris
    calls = []
    table = export_module.chunk_table

    def interrupted(data, episodes):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return table(data, episodes)

    monkeypatch.setattr(export_module, "chunk_table", interrupted)
    assert main([str(datasets_["linear"]), str(out), "--overwrite", "--chunk-transitions", "8"])
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out"]
    monkeypatch.undo()
    # --overwrite replaces an earlier export
    assert main([str(datasets_["linear"]), str(out), "--overwrite"]) == 0
    assert json.loads((out / MARKER).read_text())["episode_length"] == 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["lam-envs/nothing-v0", "OUT"], "error: no dataset 'lam-envs/nothing-v0'"),
        (["DATA", "OUT", "--chunk-transitions", "0"], "error: chunk_transitions must be >= 1"),
        (["DATA", "OUT", "--shard-transitions", "x"], "error: argument --shard-transitions"),
    ],
)
def test_bad_input_is_one_line(datasets_, tmp_path, capsys, args, message):
    args = [{"DATA": str(datasets_["grid"]), "OUT": str(tmp_path / "o")}.get(a, a) for a in args]
    with pytest.raises(SystemExit) if "argument" in message else contextlib.nullcontext():
        assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_without_pyarrow_says_how_to_install(datasets_, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    assert main([str(datasets_["grid"]), str(tmp_path / "o")]) == 2
    assert "pip install 'lam-envs[export]'" in capsys.readouterr().err
