"""``python -m lam_models.pipeline``: the command line of :mod:`lam_models.pipeline`.

Its flags are generated from :class:`~lam_models.pipeline.config.PipelineConfig` and, as
``--lam-<field>``, from the chosen LAM's own ``Config`` (defaults: its pipeline defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from lam_envs.utils.cli import Parser
from lam_envs.utils.flags import add_flags, add_runtime_flags, given_flags
from lam_envs.utils.validate import check_choice, check_int
from lam_models._commands import COMMAND_ERRORS, report_error
from lam_models.lams.base import config_from_dict, get_lam
from lam_models.pipeline import RESULTS, STAGES, _saved_config, format_results, run_stage
from lam_models.pipeline.config import PipelineConfig, PipelineError

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser(lam: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``lam`` given, also that LAM's settings as ``--lam-<field>`` flags."""
    p = Parser(
        prog="python -m lam_models.pipeline",
        description="LAPO-style pipeline: train a LAM, relabel, clone a latent policy, decode "
        "latents to actions with the labelled subset, roll out; beside BC on the labelled "
        "subset and on fully labelled data. Prints and saves results.json.",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (one sub-folder per stage)")
    p.add_argument(
        "--stage", default="all", help=f"stage to run: {'|'.join(STAGES)}|all (default: all)"
    )
    add_flags(p, PipelineConfig, skip=("lam_config",))
    if lam is not None:
        cls = get_lam(lam)
        defaults = dataclasses.asdict(config_from_dict(cls.Config, cls.pipeline_defaults))
        title = f"settings of the {lam!r} LAM (see python -m lam_models.train {lam} --help)"
        add_flags(p, cls.Config, prefix="lam-", defaults=defaults, title=title)
    p.add_argument("--quick", action="store_true", help="small step counts (seconds)")
    p.add_argument(
        "--trust-dataset",
        action="store_true",
        help="let the rollouts create the environment the dataset's metadata names even when "
        "lam_envs does not register it (its entry point is code that will run)",
    )
    add_runtime_flags(p)
    return p


def _lam_name(argv: list[str], out: Path | None) -> str:
    """The LAM the command line (or the run folder) names, to add its flags."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--lam")
    probe.add_argument("--out", type=Path)
    known, _ = probe.parse_known_args(argv)
    if known.lam is not None:
        return known.lam
    saved = _saved_config(known.out) if known.out is not None else None
    return saved.lam if saved is not None else PipelineConfig.lam


def config_from_args(args: argparse.Namespace, lam: str) -> PipelineConfig | None:
    """The configuration the flags describe, on top of the run folder's (later stages)."""
    given = given_flags(PipelineConfig, args)
    lam_given = given_flags(get_lam(lam).Config, args, prefix="lam-")
    options = {**given.pop("lam_options", {}), **lam_given}
    if args.stage in ("lam", "all"):
        if not given.get("dataset"):
            raise PipelineError(f"--stage {args.stage} needs --dataset")
        base = PipelineConfig.quick(dataset=given["dataset"]) if args.quick else PipelineConfig()
        return _with(base, given, lam, options)
    saved = _saved_config(args.out)
    if saved is None or not (given or options):
        return None
    return _with(saved, given, lam, options)


def _with(base: PipelineConfig, given: dict, lam: str, options: dict) -> PipelineConfig:
    """``base`` with the flags ``given`` and the LAM's ``options`` over its own (the LAM's
    configuration rebuilt from them: ``lam`` may name another method)."""
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    values.update(given, lam=lam, lam_config=None)
    values["lam_options"] = {**base.lam_options, **options}
    return PipelineConfig(**values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        lam = _lam_name(argv, None)
        get_lam(lam)
    except ValueError as error:
        return report_error(error)
    args = build_parser(lam).parse_args(argv)
    try:
        torch.set_num_threads(check_int("threads", args.threads, low=1))
        check_choice("stage", args.stage, (*STAGES, "all"))
        config = config_from_args(args, lam)
        result = run_stage(
            args.stage,
            args.out,
            config,
            not args.quiet,
            args.device,
            args.overwrite,
            args.trust_dataset,
            args.tensorboard,
        )
    except COMMAND_ERRORS as error:  # bad input: 2; the machine (a full disk): 1
        return report_error(error)
    if args.stage == "all":
        print(format_results(result))
        print(f"saved {args.out}/ (config.json, one folder per stage, {RESULTS})")
    else:
        print(f"stage {args.stage}: {json.dumps(result, default=float)}")
        print(f"saved {args.out / args.stage}/")
    return 0
