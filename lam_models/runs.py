"""Saving a trained model with its configuration and metrics, the same way for every method.

A run folder holds ``model.pt`` (the state dict), ``run.json`` (method, configuration,
metrics, dataset, package version, elapsed seconds) and whatever plots the method makes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lam_envs


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null reads as "not defined here"
    if isinstance(value, Path):
        return str(value)
    return value


def save_run(
    out_dir: str | Path,
    method: str,
    model: torch.nn.Module | None,
    config: Any,
    metrics: dict[str, Any],
    **extra: Any,
) -> Path:
    """Write ``model.pt`` and ``run.json`` into ``out_dir`` (created); return run.json's path.

    Files are written under a temporary name and renamed, so a run folder never holds a
    half-written file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is not None:
        tmp = out / "model.pt.tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, out / "model.pt")
    record = {
        "method": method,
        "lam_envs_version": lam_envs.__version__,
        "config": config,
        "metrics": metrics,
        **extra,
    }
    path = out / "run.json"
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(_jsonable(record), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def load_run(out_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of a run folder."""
    return json.loads((Path(out_dir) / "run.json").read_text())


def write_csv(rows: list[dict[str, Any]], path: str | Path, columns: list[str]) -> None:
    """One row per dict, in ``columns`` order; floats with 6 significant digits."""
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def read_csv(
    path: str | Path, text: tuple[str, ...] = (), integers: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The rows :func:`write_csv` wrote: columns in ``text`` stay strings, those in
    ``integers`` become ints, every other one a float (an empty cell or "nan": NaN)."""
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key in integers:
                row[key] = int(value)
            elif key not in text:
                row[key] = float(value) if value not in ("", "nan") else math.nan
    return rows
