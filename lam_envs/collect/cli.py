"""``python -m lam_envs.collect``: the command line of :func:`lam_envs.collect.collect`.

Its flags are generated (:mod:`lam_envs.utils.flags`) from two dataclasses: what to collect,
:class:`~lam_envs.collect.config.CollectConfig` (also a recipe's keys), and how and where,
:class:`CollectOptions`. Flags default to "not given", so that only the flags given
override a recipe.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lam_envs.collect import _root, collect, usable_cpus
from lam_envs.collect import shards as _shards
from lam_envs.collect.config import CollectConfig
from lam_envs.collect.workers import WorkerError
from lam_envs.collect.writer import check_target
from lam_envs.utils import staging
from lam_envs.utils.cli import Parser
from lam_envs.utils.config import option
from lam_envs.utils.flags import add_flags, from_flags, given_flags

__all__ = ["CollectOptions", "build_parser", "clean_root", "configs_from_args", "main"]


@dataclass
class CollectOptions:
    """How and where to collect (the data does not depend on any of these)."""

    root: str | None = option(
        None,
        lambda: (
            "output root (default: $MINARI_DATASETS_PATH if set, else ~/.minari/datasets; "
            "here: " + os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets") + ")"
        ),
    )
    overwrite: bool = option(False, "replace an existing dataset (default: off)")
    workers: int | None = option(
        None,
        lambda: (
            "processes writing shards in parallel (default: the CPU cores here, "
            f"{usable_cpus()}, capped by the work: one per {_shards.BLOCK_TRANSITIONS:,} "
            "transitions); the data does not depend on it"
        ),
    )
    ray: str | None = option(
        None,
        "run the shards as Ray tasks (pip install 'lam-envs[ray]'): no ADDRESS starts Ray "
        "here (or joins $RAY_ADDRESS), 'auto' joins this machine's cluster; --root must be a "
        "path every node sees (default: no Ray)",
        cli={"nargs": "?", "const": "", "metavar": "ADDRESS", "type": str},
    )
    recipe: tuple[Path, ...] | None = option(
        None,
        "TOML recipe(s) from datasets/, built in turn; flags given override them "
        "(default: none, the flags alone)",
    )
    quiet: bool = option(
        False, "no progress display (default: a bar on a terminal, a line per 10%% otherwise)"
    )
    clean: bool = option(
        False,
        "only remove the staging folders that killed runs left under the root, and list what "
        "remains (runs of live processes are never touched) (default: off)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m lam_envs.collect",
        description="Collect a Minari dataset (HDF5) with partial action labels from a "
        "lam-envs environment under a behaviour policy. See docs/dataset.md.",
    )
    add_flags(p, CollectConfig)
    add_flags(p, CollectOptions)
    return p


def configs_from_args(args: argparse.Namespace) -> list[CollectConfig]:
    """One config per recipe (or one from the flags alone); flags given override recipes."""
    given = given_flags(CollectConfig, args)
    recipes = getattr(args, "recipe", None)
    if "episodes" in given and "transitions" in given:
        raise ValueError("give --episodes or --transitions, not both")
    if recipes is None:
        return [CollectConfig(**given)]
    if len(recipes) > 1 and "dataset_id" in given:
        raise ValueError("--dataset-id names one dataset; it cannot apply to several recipes")
    return [CollectConfig.from_recipe(recipe, **given) for recipe in recipes]


def clean_root(root: Path) -> int:
    """``--clean``: remove stale staging folders under ``root`` and say what is left."""
    found = staging.clean(root)
    for path, status in found:
        if status.startswith("stuck"):  # reported, not counted: it is still there
            print(f"kept      {path} (stale, but cannot be removed: {status[7:]})")
        else:
            print(f"{status:9} {path}")
    for path in staging.unpublished(root):
        print(f"kept      {path} (a dataset whose publishing was refused; delete it by hand)")
    removed = sum(status == "removed" for _, status in found)
    print(f"removed {removed} stale staging folder(s) under {root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = from_flags(CollectOptions, args)
        root = _root(options.root)
        if options.clean:
            return clean_root(root)
        configs = configs_from_args(args)
        for config in configs:  # every refusal before the first rollout
            check_target(root, config.dataset_id or config.default_dataset_id(), options.overwrite)
        for config in configs:
            dataset_id = config.dataset_id or config.default_dataset_id()
            print(f"collecting {dataset_id}: {config.describe()}", flush=True)
            summary = collect(
                config,
                root,
                overwrite=options.overwrite,
                progress=not options.quiet,
                workers=options.workers,
                ray=options.ray,
            )
            print(summary)
            hint = "" if options.root is None else f"MINARI_DATASETS_PATH={root} "
            load = f"import minari; minari.load_dataset('{summary.dataset_id}')"
            print(f'  load with    {hint}python -c "{load}"')
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (WorkerError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the dataset being written was removed", file=sys.stderr)
        return 130
    return 0
