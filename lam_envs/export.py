"""Export a lam-envs dataset to Parquet, one row per transition, for Hugging Face ``datasets``
(and pandas, Polars, DuckDB, ...).

    pip install 'lam-envs[export]'                                   # pyarrow
    python -m lam_envs.export lam-envs/grid-low-uniform-v0 exports/grid-low-uniform
    python -m lam_envs.export DATASET OUT --overwrite                # replace an earlier export

    import datasets
    ds = datasets.load_dataset("parquet", data_dir="exports/grid-low-uniform/data", split="train")
    ds = ds.with_format("torch")                                     # or "numpy"

The output folder holds ``data/train-XXXXX-of-YYYYY.parquet`` (whole episodes, one row
group per chunk) and ``lam_envs.json`` (the source's Minari metadata, its fingerprint, the
columns, and the manifest: every file the export wrote, with its size and SHA-256).
Columns, one row per transition t of an episode:

- ``episode``, ``step`` (int64): the episode index and t;
- ``obs``, ``next_obs`` (float32, nested lists with the observation's shape): o_t, o_{t+1};
- ``action``: what a learner may read, as stored: the action where labelled, the sentinel
  (NaN for LinearLAM, -1 for GridLAM) elsewhere, unless the dataset was collected with
  ``--full-labels``; ``label_mask`` (bool): whether a_t is labelled;
- ``reward`` (float64), ``terminated``, ``truncated`` (bool), as Gymnasium returned them;
- ``oracle_<field>``: the ground truth after the step, for evaluation only (``oracle_action``
  and the environment's info: ``q``, ``eps``, ``b`` or ``position``, ``noise``,
  ``clean_obs``, ``distracted``; on the grid also ``position_before``, ``clean_obs_before``).

Memory stays flat: episodes are read and written a chunk at a time (``--chunk-transitions``).
The export is written to a hidden folder beside OUT and renamed into place when complete;
an existing OUT is replaced only with ``--overwrite``, and only if it is an earlier export:
its manifest lists exactly the files it holds, with their sizes and hashes (a folder with
any other file, or a changed one, is refused). Two exports to one OUT at once: the second
is refused (an exclusive claim beside OUT). Hidden folders left beside OUT by exports that
were killed are removed by the next export into that folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lam_envs.dataset import Dataset
from lam_envs.utils import staging as _staging
from lam_envs.utils.cli import Parser
from lam_envs.utils.outputs import check_path, claim, remove_stale
from lam_envs.utils.validate import check_int

MARKER = "lam_envs.json"  # the file that says a folder is an export (and may be replaced)
_CHUNK_BYTES = 64 * 2**20  # one chunk of rows in memory at a time
_SHARD_TRANSITIONS = 1_000_000  # rows per Parquet file


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "the export needs pyarrow: pip install 'lam-envs[export]' (or pip install pyarrow)"
        ) from None
    return pa, pq


def _column(pa, array: np.ndarray):
    """A numpy array (N, *shape) as an Arrow column of nested fixed-size lists of that
    shape, which ``datasets`` turns back into (N, *shape) arrays."""
    array = np.ascontiguousarray(array)
    column = pa.array(array.reshape(-1))
    for size in reversed(array.shape[1:]):
        column = pa.FixedSizeListArray.from_arrays(column, size)
    return column


def chunk_table(data, episodes: np.ndarray):
    """The rows of ``episodes`` (whole episodes of a ``Dataset``) as an Arrow table."""
    pa, _ = _pyarrow()
    learn = data.read_numpy(episodes)
    outcomes = data.outcomes(episodes)
    oracle = data.oracle(episodes)
    length = data.episode_length
    columns: dict[str, np.ndarray] = {
        "episode": np.repeat(np.asarray(episodes, dtype=np.int64), length),
        "step": np.tile(np.arange(length, dtype=np.int64), len(episodes)),
        "obs": learn["obs"],
        "next_obs": learn["next_obs"],
        "action": learn["actions"],
        "label_mask": learn["label_mask"],
        **outcomes,
        **{f"oracle_{name}": value for name, value in oracle.items()},
    }
    return pa.table({name: _column(pa, value) for name, value in columns.items()})


def export(
    dataset: str | Path,
    out: str | Path,
    overwrite: bool = False,
    chunk_transitions: int | None = None,
    shard_transitions: int = _SHARD_TRANSITIONS,
) -> Path:
    """Write ``dataset`` (a Minari id or folder made by ``lam_envs.collect``) to ``out`` as
    Parquet; see the module doc. Returns the output folder."""
    _pyarrow()  # installed? (before anything is claimed or read)
    if chunk_transitions is not None:
        check_int("chunk_transitions", chunk_transitions, low=1)
    check_int("shard_transitions", shard_transitions, low=1)
    out = check_path(out, "OUT").absolute()
    if out.parent.exists() and not out.parent.is_dir():
        raise ValueError(f"OUT {str(out)!r} cannot be written ({str(out.parent)!r} is a file)")
    out.parent.mkdir(parents=True, exist_ok=True)
    # one export into OUT at a time (the claim holds on NFS too); then the leftovers of
    # killed exports beside it go
    with claim(out.parent / f".{out.name}{CLAIM_SUFFIX}", f"OUT {str(out)!r}"):
        _remove_leftovers(out.parent)
        _check_target(out, overwrite)
        return _export(dataset, out, overwrite, chunk_transitions, shard_transitions)


def _export(dataset, out: Path, overwrite: bool, chunk_transitions, shard_transitions) -> Path:
    _, pq = _pyarrow()
    data = Dataset(dataset)  # checks the contract; creates no environment
    length, n = data.episode_length, len(data.episodes)
    if chunk_transitions is None:
        row_bytes = chunk_table(data, data.episodes[:1]).nbytes / length
        chunk_transitions = max(1, int(_CHUNK_BYTES // max(row_bytes, 1)))
    per_chunk = max(1, chunk_transitions // length)
    per_shard = max(per_chunk, shard_transitions // length // per_chunk * per_chunk)
    shards = math.ceil(n / per_shard)

    staging = out.parent / f".{out.name}{PARTIAL}{_staging.new_name()}"
    try:
        (staging / "data").mkdir(parents=True)
        schema = None
        for shard in range(shards):
            path = staging / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
            writer = None
            try:
                first = shard * per_shard
                for start in range(first, min(first + per_shard, n), per_chunk):
                    table = chunk_table(data, data.episodes[start : start + per_chunk])
                    if writer is None:
                        schema = table.schema.with_metadata(
                            {"lam_envs": json.dumps({"source": data.dataset_id})}
                        )
                        writer = pq.ParquetWriter(path, schema)
                    writer.write_table(table.cast(schema))
            finally:
                if writer is not None:
                    writer.close()
        info = {
            "source": data.dataset_id,
            "source_fingerprint": data.fingerprint,
            "transitions": data.num_transitions(),
            "episodes": n,
            "episode_length": length,
            "columns": {field.name: str(field.type) for field in schema},
            "minari_metadata": data.metadata,
            "files": {
                path.relative_to(staging).as_posix(): _describe(path)
                for path in sorted((staging / "data").iterdir())
            },
        }
        (staging / MARKER).write_text(json.dumps(info, indent=1, default=str))
        _publish(staging, out, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


CLAIM_SUFFIX = ".lam-envs-claim"  # beside OUT: the export writing it now
PARTIAL, OLD = ".partial-", ".old-"  # beside OUT: an export being written, one being replaced


def _describe(path: Path) -> dict[str, Any]:
    """A file's size and SHA-256, as the manifest records them."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _remove_leftovers(folder: Path) -> None:
    """Remove the hidden folders that killed exports (dead processes of this host) left in
    ``folder``: ``.NAME.partial-OWNER`` (and an older version's ``.NAME.partial-PID-HEX``)
    and ``.NAME.old-OWNER``."""
    remove_stale(folder, f".*{PARTIAL}*", lambda name: name.rsplit(PARTIAL, 1)[1])
    remove_stale(folder, f".*{OLD}*@*", lambda name: name.rsplit(OLD, 1)[1])


def _not_an_export(out: Path) -> str | None:
    """Why the folder ``out`` is not exactly an earlier export (None: it is). An export is
    recognised by its manifest, not by a file name: the files it lists, with their sizes
    and hashes, and nothing else."""
    try:
        info = json.loads((out / MARKER).read_text())
    except FileNotFoundError:
        return f"it has no {MARKER}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"its {MARKER} cannot be read ({error})"
    files = info.get("files") if isinstance(info, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        return f"its {MARKER} lists no files (not written by this version of the export)"
    found = {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_symlink() or not p.is_dir()
    }
    other = sorted(found - set(files) - {MARKER})
    if other:
        return f"it holds files the export did not write ({', '.join(other[:3])})"
    for name, recorded in files.items():
        path = out / name
        if path.is_symlink() or not path.is_file():
            return f"{name}, which the export wrote, is missing"
        if path.stat().st_size != recorded.get("bytes") or _describe(path) != recorded:
            return f"{name} changed since the export wrote it"
    return None


def _check_target(out: Path, overwrite: bool) -> None:
    if not os.path.lexists(out):
        return
    if not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(
            f"{out} is not a folder; refusing to replace it, even with --overwrite"
        )
    reason = _not_an_export(out)
    if reason is not None:
        raise FileExistsError(
            f"{out} is not a lam_envs export to replace: {reason}; refusing to replace it, "
            "even with --overwrite: choose another folder"
        )


def _publish(staging: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished export into place; an earlier export is swapped out first and
    then deleted. Checked again here: OUT may have appeared while we wrote."""
    _check_target(out, overwrite)
    trash = None
    if out.exists():
        trash = out.parent / f".{out.name}{OLD}{_staging.new_name()}"
        os.replace(out, trash)
    os.replace(staging, out)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m lam_envs.export",
        description="Export a lam-envs dataset (Minari, from python -m lam_envs.collect) to "
        "Parquet, one row per transition, for Hugging Face datasets: "
        "datasets.load_dataset('parquet', data_dir='OUT/data').",
    )
    p.add_argument("dataset", help="a Minari dataset id (under MINARI_DATASETS_PATH) or folder")
    p.add_argument("out", type=Path, help="output folder (must not exist, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at OUT")
    p.add_argument(
        "--chunk-transitions",
        type=int,
        default=None,
        help="transitions read and written at a time (default: about 64 MiB of rows)",
    )
    p.add_argument(
        "--shard-transitions",
        type=int,
        default=_SHARD_TRANSITIONS,
        help=f"transitions per Parquet file (default {_SHARD_TRANSITIONS:,})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = export(
            args.dataset,
            args.out,
            overwrite=args.overwrite,
            chunk_transitions=args.chunk_transitions,
            shard_transitions=args.shard_transitions,
        )
    except (ValueError, FileExistsError, ImportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    info: dict[str, Any] = json.loads((out / MARKER).read_text())
    files = sorted((out / "data").glob("*.parquet"))
    print(
        f"exported {info['source']}: {info['transitions']:,} transitions in "
        f"{info['episodes']:,} episodes to {out} ({len(files)} Parquet file(s))\n"
        f"  load with    python -c \"import datasets; datasets.load_dataset('parquet', "
        f"data_dir='{out / 'data'}', split='train')\""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
