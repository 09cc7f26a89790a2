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
from lam_envs.utils.outputs import CLAIM, write_atomically


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
    filename: str = "run.json",
    **extra: Any,
) -> Path:
    """Write ``model.pt`` and ``run.json`` (or ``filename``) into ``out_dir`` (created);
    return the JSON file's path. The one writer of every run record of the package.

    Files are written under a temporary name and renamed, so a run folder never holds a
    half-written file; a write that fails (a full disk: ``DiskFull``, one line) leaves no
    temporary file behind.
    """
    out = Path(out_dir)
    state = model.state_dict() if model is not None else None
    if state is not None:  # checked before anything is written
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise ValueError(
                f"the {method} model's weights {', '.join(bad[:4])} are NaN or infinite; "
                f"nothing was saved in {str(out)!r}"
            )
    out.mkdir(parents=True, exist_ok=True)
    if state is not None:

        def write_model(tmp: Path) -> None:
            with tmp.open("wb") as f:  # a Python file: a full disk is an OSError, not torch's
                torch.save(state, f)

        write_atomically(out / "model.pt", write_model)
    record = {
        "method": method,
        "lam_envs_version": lam_envs.__version__,
        "config": config,
        "metrics": metrics,
        **extra,
    }
    text = json.dumps(_jsonable(record), indent=2, allow_nan=False) + "\n"
    return write_atomically(out / filename, lambda tmp: tmp.write_text(text))


def load_run(out_dir: str | Path, filename: str = "run.json") -> dict[str, Any]:
    """The ``run.json`` (or ``filename``) of a run folder."""
    path = Path(out_dir) / filename
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"missing {path}: not a run folder") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is corrupt: {error}") from None


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any work, an output folder that cannot be written or already holds
    files (unless ``overwrite``). Creates nothing."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir() and not overwrite and any(not p.name.startswith(CLAIM) for p in out.iterdir()):
        raise ValueError(
            f"--out {str(out)!r} already holds files (a run?); choose another folder, or pass "
            "--overwrite to write into it"
        )
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(out)!r} cannot be written ({str(existing)!r} is read-only)")
    return out


def plot_history(history: dict[str, list[float]], path: str | Path, title: str = "") -> Path:
    """A PNG of a training history (:class:`lam_models.lams.base.TrainingLog`): one panel per
    logged quantity against the update step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = len(history.get("step", []))  # single values (e.g. scored_*) are no curves
    keys = [k for k, v in history.items() if k not in ("step", "seconds") and len(v) == steps > 0]
    cols = min(3, max(1, len(keys)))
    rows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.plot(history["step"], history[key], color="tab:blue")
        ax.set(title=key.replace("_", " "), xlabel="update")
        if "loss" in key and min(history[key]) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(f"{title} training curves (window means)" if title else "training curves")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    finally:
        plt.close(fig)
    return path


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
