"""Datasets built from the recipes in ``datasets/`` on first use, and reused after.

    path = ensure_dataset("grid-low-uniform", root, episodes=50)   # a reduced copy

A recipe is a TOML file of :class:`lam_envs.collect.CollectConfig` fields. A dataset already
under ``root`` is reused only when it was collected with exactly the same configuration; a
reduced copy (any override) gets its own id, so it never takes the standard one's place.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from lam_envs.collect import CollectConfig, collect
from lam_models.data import LAMDataset

__all__ = ["RECIPES", "ensure_dataset", "recipe_config"]

#: The folder of the package's dataset recipes (a source checkout's ``datasets/``).
RECIPES = Path(__file__).resolve().parents[1] / "datasets"


def recipe_config(recipe: str | Path, **overrides: Any) -> CollectConfig:
    """The collect configuration of a recipe (a name in ``datasets/`` or a path), with
    ``overrides``; an overridden recipe gets an id of its own (``...-<changes>-v0``)."""
    path = Path(recipe)
    if path.suffix != ".toml":
        path = RECIPES / f"{recipe}.toml"
    config = CollectConfig.from_recipe(path)
    changed = {k: v for k, v in overrides.items() if getattr(config, k) != v}
    if not changed:
        return config
    config = dataclasses.replace(config, **changed)
    tag = "-".join(f"{k.replace('_', '')}{v}" for k, v in sorted(changed.items()))
    base = (config.dataset_id or config.default_dataset_id()).removesuffix("-v0")
    return dataclasses.replace(config, dataset_id=f"{base}-{tag.replace('.', 'p')}-v0")


def ensure_dataset(
    recipe: str | Path | CollectConfig, root: str | Path, progress: bool = False, **overrides
) -> Path:
    """The path of the recipe's dataset under ``root``, collected there first if needed.

    A dataset of the same id collected with another configuration is an error (remove it,
    or choose another root), never silently reused or replaced.
    """
    config = recipe if isinstance(recipe, CollectConfig) else recipe_config(recipe, **overrides)
    root = Path(root)
    path = root / (config.dataset_id or config.default_dataset_id())
    if (path / "data" / "metadata.json").is_file():
        return _same_config(path, config)
    try:
        return collect(config, root=root, progress=progress).path
    except FileExistsError as error:
        # Another run (a benchmark sharing this data root) published the id first, before
        # or while this one collected: publishing is atomic, so what is there is whole.
        if not (path / "data" / "metadata.json").is_file():
            raise
        _same_config(path, config)
        kept = getattr(error, "kept", None)  # our copy of the same data, set aside
        if kept is not None:
            shutil.rmtree(kept, ignore_errors=True)
        return path


def _same_config(path: Path, config: CollectConfig) -> Path:
    """``path``, a dataset collected with ``config``; refused if it was collected otherwise."""
    stored = LAMDataset(path).collect_config
    wanted = dataclasses.asdict(config)
    differ = sorted(k for k in wanted if k in stored and stored[k] != wanted[k])
    if differ:
        raise ValueError(
            f"dataset {str(path)!r} exists but was collected with other settings "
            f"({', '.join(f'{k}={stored[k]!r}, not {wanted[k]!r}' for k in differ)}); "
            "remove it or choose another data root"
        )
    return path
