"""Saving a trained model with its configuration and metrics, the same way for every method.

A run folder holds ``model.pt`` (the state dict), ``run.json`` (method, configuration,
metrics, dataset, package version, elapsed seconds) and whatever plots the method makes.
"""

from __future__ import annotations

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
