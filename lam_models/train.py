"""Train one LAM on a dataset, print its metrics, save the run.

    python -m lam_models.train METHOD --dataset ID [options]
    python -m lam_models.train linear --env LinearLAM-v0 -k sigma_exo=2.0   # fresh data, no disk
    python -m lam_models.train METHOD --help                               # every option

METHOD is any registered LAM (``linear``, ``vq``, ``laom``, or one of your own: see
:mod:`lam_models.lams.base`). The run, top to bottom, the same for every method:

1. Data: the dataset split by episode into train and held-out transitions, with the
   labelled subset (:class:`~lam_models.split.DataSplit`); or, for methods that can, fresh
   transitions streamed from the native vector env.
2. Training: the method's own loop (:meth:`LAM.fit`) on the chosen device.
3. Metrics: the method's own (:meth:`LAM.metrics`), on held-out transitions.
4. Saving: ``model.pt`` (weights only), ``run.json`` (the run and model configuration,
   metrics, training history), ``training.png`` (the training curves) and the method's own
   pictures, into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lam_envs.utils.cli import Parser, run_main
from lam_envs.utils.config import Checked
from lam_envs.utils.flags import add_flags, add_runtime_flags, flag_names, from_flags, option
from lam_envs.utils.outputs import claim_output_folder, staged_files
from lam_envs.utils.validate import check_int
from lam_models._commands import COMMAND_ERRORS, report_error
from lam_models.lams.base import LAM, get_lam, lam_names, resolve_device
from lam_models.lams.training import COMPILE_MODES, check_compile
from lam_models.runs import plot_history
from lam_models.split import DataSplit, held_out_option

__all__ = ["RunConfig", "main", "open_data", "train_and_evaluate"]


@dataclass
class RunConfig(Checked):
    """What one training run reads (the method's own settings are its ``Config``)."""

    dataset: str | None = option(None, "Minari id or path of a lam_envs.collect dataset")
    eval_dataset: str | None = option(
        None, "score on the held-out episodes of this dataset (same environment) instead"
    )
    held_out: float = held_out_option()
    label_fraction: float | None = option(
        None,
        "the labelled subset: this share of the train transitions; none = every label the "
        "dataset shows (a stream: share of fresh transitions labelled, none = all)",
    )
    eval_transitions: int = option(
        20_000,
        "score at most this many held-out transitions (a stream: this many fresh ones)",
        low=2,
    )
    seed: int = option(0, "seed of the split, labels, batches and model", low=0)

    def split(self) -> DataSplit:
        """The run's split of ``dataset``."""
        return DataSplit(
            self.dataset,
            self.held_out,
            self.seed,
            label_fraction=self.label_fraction,
            eval_dataset=self.eval_dataset,
            eval_transitions=self.eval_transitions,
        )


def open_data(cls: type[LAM], run: RunConfig, stream: Any = None) -> Any:
    """The run's data source: a :class:`DataSplit` of ``run.dataset``, or the method's
    stream of fresh transitions when no dataset is given."""
    if run.dataset is None:
        if cls.stream_config is None:
            raise ValueError(f"the {cls.name!r} LAM needs --dataset")
        return cls.open_stream(
            stream or cls.stream_config(), run.seed, run.label_fraction, run.eval_transitions
        )
    return run.split()


def train_and_evaluate(
    method: str,
    lam_config: Any = None,
    run: RunConfig | None = None,
    stream: Any = None,
    device: str = "auto",
    progress: bool = False,
    tensorboard: Path | None = None,
    compile: str | None = None,
) -> tuple[LAM, dict[str, Any], Any]:
    """Train one ``method`` LAM and score it; returns (lam, its metrics, the data source).
    ``compile``: a ``torch.compile`` mode for the networks (CUDA only), None: eager."""
    cls = get_lam(method)
    run = run or RunConfig()
    lam_config = lam_config if lam_config is not None else cls.Config()
    source = open_data(cls, run, stream)
    lam = cls.train([lam_config], [source], [run.seed], device, progress, tensorboard, compile)
    return lam, lam.metrics([source])[0], source


def build_parser(cls: type[LAM]) -> argparse.ArgumentParser:
    p = Parser(
        prog=f"python -m lam_models.train {cls.name}",
        description=f"Train the {cls.name!r} LAM ({cls.__doc__.strip().splitlines()[0]}); "
        "print its held-out metrics; save model.pt, run.json and training.png.",
    )
    groups = [(RunConfig, "data"), (cls.Config, f"the {cls.name!r} LAM")]
    if cls.stream_config is not None:
        groups.append((cls.stream_config, "fresh transitions instead of --dataset"))
    seen: dict[str, str] = {}
    for config, title in groups:
        for name, flags in flag_names(config).items():
            for flag in flags:
                if flag in seen:
                    raise ValueError(
                        f"{config.__name__}.{name} and {seen[flag]} both want the flag {flag}"
                    )
                seen[flag] = f"{config.__name__}.{name}"
        add_flags(p, config, title=title)
    p.add_argument("--out", type=Path, help=f"run folder (default: runs/{cls.name}/<data>-s<seed>)")
    add_runtime_flags(p)
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        metavar="MODE",
        help="torch.compile the networks, on a CUDA device only (MODE: "
        f"{', '.join(COMPILE_MODES)}; default: default); off by default",
    )
    return p


def default_out(method: str, run: RunConfig, stream: Any) -> Path:
    name = Path(run.dataset).name if run.dataset else getattr(stream, "env", "stream")
    return Path("runs") / method / f"{name.replace('/', '_')}-s{run.seed}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nmethods: " + ", ".join(lam_names()))
        return 0 if argv else 2
    try:
        cls = get_lam(argv[0])
        parser = build_parser(cls)
    except ValueError as error:
        return report_error(error)
    args = parser.parse_args(argv[1:])
    try:
        torch.set_num_threads(check_int("threads", args.threads, low=1))
        run = from_flags(RunConfig, args)
        lam_config = from_flags(cls.Config, args)
        stream = from_flags(cls.stream_config, args) if cls.stream_config else None
        if run.dataset is not None and stream is not None:
            given = [n for n in flag_names(cls.stream_config) if hasattr(args, n)]
            if given:
                raise ValueError(
                    f"--{given[0].replace('_', '-')} applies to streamed data, not to --dataset"
                )
        device = resolve_device(args.device)  # refused before any work
        if args.compile is not None:
            check_compile(args.compile, device)
        out = args.out or default_out(cls.name, run, stream)
        # The folder is claimed for the whole run: a second run into it (the same --out,
        # or the same default) is refused now, not overwritten at the end.
        with claim_output_folder(out, args.overwrite) as out:
            start = time.perf_counter()
            lam, metrics, source = train_and_evaluate(
                cls.name,
                lam_config,
                run,
                stream,
                device,
                not args.quiet,
                args.tensorboard,
                args.compile,
            )
            elapsed = time.perf_counter() - start
            settings = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(lam_config).items())
            print(f"{cls.name} LAM ({settings}); seed {run.seed}, device {lam.device}\n")
            print(cls.format_metrics(metrics))
            with staged_files(out) as staged:  # all files, or none (a full disk)
                path = lam.save(
                    staged, metrics, run_config=run, stream=stream, elapsed_seconds=elapsed
                )
                pictures = [
                    plot_history(lam.history[0], staged / "training.png", f"{cls.name} LAM"),
                    *lam.plots(staged, [source]),
                ]
    except COMMAND_ERRORS as error:  # bad input: 2; the machine (a full disk): 1
        return report_error(error)
    names = ", ".join(p.name for p in (path.with_name("model.pt"), path, *pictures))
    print(f"\nsaved {out}/ ({names}) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
