"""The whole story on an embedded default (``make demo``): about two minutes on 2 CPU cores.

    python -m lam_models.demo --out outputs/demo

1. Environments: roll out both with their behaviour policies (:mod:`lam_envs.demo`) and
   save a picture of grid frames.
2. Data: collect a GridLAM dataset (low noise row, snaking policy with ε = 0.3) with 1% of
   the actions labelled, into ``<out>/minari``.
3. LAMs and the LAPO-style pipeline (:mod:`lam_models.pipeline`), three times: the VQ LAM
   (LAPO), the LAOM-style LAM without labels, and the LAOM-style LAM whose action head
   sees the 1% labels. Each: train the LAM, relabel every transition with its latent, clone
   a latent policy, fit a decoder from latent to action on the 1%, roll out.
4. A table of what each latent captured (probe error of the true action) and what the
   composed policy achieves (return, normalised by BC on fully labelled data), beside BC on
   the 1% alone; and ``pipeline.png``.

The noise row changes every step, so a LAM that reconstructs o' without labels spends its
latent on the noise: the question this package exists to answer, on one screen.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lam_envs.demo as env_demo
from lam_envs.collect import CollectConfig, collect
from lam_envs.utils.cli import Parser, run_main
from lam_models.evaluation.metrics import mean_stderr
from lam_models.pipeline import run_pipeline

DATASET_ID = "lam_envs/demo-grid-snaking-v0"
METHODS = (  # (label, LAM, its settings: the LAOM head's supervision on the labelled subset)
    ("VQ LAM (LAPO)", "vq", {}),
    ("LAOM-style, no labels", "laom-mlp", {}),
    ("LAOM-style + 1% labels", "laom-mlp", {"action_head": True, "action_weight": 1.0}),
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m lam_models.demo",
        description="Environments, a dataset with 1%% labels, three LAMs through the "
        "LAPO-style pipeline, a table and plots (about 2 minutes per seed on 2 CPU cores).",
    )
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of data and models (default: 0)")
    p.add_argument(
        "--seeds", type=int, default=1, help="seeds per method, from --seed on (default: 1)"
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for the tests")
    return p


def _stats(values: list[float]) -> tuple[float, float]:
    return mean_stderr(values) if values else (float("nan"), 0.0)


def save_plot(path: Path, rows: list[dict], labelled_bc: list[float], seeds: int) -> None:
    """Two bar panels, mean ± s.e. over seeds with the value on each bar: the composed
    policy's normalised return beside BC on the 1% alone, and the action probe beside a
    latent that holds nothing of the action."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["label"] for row in rows]
    bc_mean, bc_err = _stats(labelled_bc)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        (left, "normalised_return", "tab:blue", "return / return of BC on all labels",
         "the composed policy decoder(π(z | o))", bc_mean, "BC on the 1% alone"),
        (right, "probe", "tab:orange", "probe nmse of the true action from z",
         "what the latent holds (0: the action; 1: none of it)", 1.0,
         "a latent with nothing of the action"),
    )  # fmt: skip
    for ax, key, colour, ylabel, title, baseline, baseline_label in panels:
        stats = [_stats(row[key]) for row in rows]
        means, errors = [m for m, _ in stats], [e for _, e in stats]
        bars = ax.bar(labels, means, color=colour, yerr=errors if seeds > 1 else None, capsize=4)
        ax.bar_label(bars, [f"{m:.2f}" for m in means], padding=3, fontsize=9)
        ax.axhline(baseline, color="tab:gray", ls="--", label=baseline_label)
        if key == "normalised_return" and seeds > 1:
            ax.axhspan(bc_mean - bc_err, bc_mean + bc_err, color="tab:gray", alpha=0.15)
        ax.set(ylabel=ylabel, ylim=(0, 1.2))
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    spread = "1 seed" if seeds == 1 else f"mean ± s.e. over {seeds} seeds"
    fig.suptitle(
        f"GridLAM, low noise row, snaking policy (ε = 0.3), 1% of actions labelled ({spread})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = clock = time.perf_counter()

    def stage_done() -> None:
        nonlocal clock
        now = time.perf_counter()
        print(f"   [{now - clock:.0f} s; {now - start:.0f} s so far]")
        clock = now

    seeds = [args.seed + i for i in range(args.seeds)]
    print(f"The demo: about 2 minutes per seed on 2 CPU cores ({len(seeds)} seed(s)).\n")
    print("== 1. The environments and their behaviour policies\n")
    env_demo.main(["--out", str(out), "--seed", str(args.seed)])
    stage_done()

    print("\n== 2. A dataset: GridLAM low noise, snaking policy ε = 0.3, 1% of actions labelled\n")
    episodes, length = (20, 50) if args.quick else (200, 100)
    config = CollectConfig(
        env="GridLAM-v0",
        preset="low",
        policy="snaking",
        epsilon=0.3,
        label_fraction=0.01,
        seed=args.seed,
        dataset_id=DATASET_ID,
        episodes=episodes,
        episode_length=length,
    )
    summary = collect(config, root=out / "minari", overwrite=True, progress=not args.quick)
    print(summary)
    stage_done()

    print(
        "\n== 3. Three LAMs through the LAPO-style pipeline (train, relabel, BC, decode, roll out)"
    )
    rows, labelled_bc = [], []
    for label, lam, options in METHODS:
        row = {"label": label, "probe": [], "return": [], "normalised_return": [],
               "agreement": []}  # fmt: skip
        for seed in seeds:
            print(f"\n-- {label}" + (f", seed {seed}" if len(seeds) > 1 else ""))
            name = lam + ("-head" if options.get("action_head") else "")
            result = run_pipeline(
                summary.path,
                lam=lam,
                out_dir=out / "pipeline" / (name if len(seeds) == 1 else f"{name}-s{seed}"),
                quick=args.quick,
                progress=not args.quick,
                seed=seed,
                overwrite=True,
                lam_options=options,
            )
            row["probe"].append(result["lam_probe"]["nmse_action"])
            row["return"].append(result["composed_return"])
            row["normalised_return"].append(result["normalised_return"])
            row["agreement"].append(result["composed_agreement"])
            if lam == METHODS[0][1]:  # the baselines do not depend on the LAM: read them once
                full = result["full_bc_return"]
                labelled_bc.append(result["labelled_bc_return"] / full if full else float("nan"))
            stage_done()
        rows.append(row)

    spread = "" if len(seeds) == 1 else f" (mean ± s.e. over {len(seeds)} seeds)"
    print(f"\n== 4. What the latents captured, and what they are worth{spread}\n")
    wide = 7 if len(seeds) > 1 else 0  # room for "± s.e."
    print(
        f"{'method':26}{'action probe nmse':>{18 + wide}}{'return':>{9 + wide}}"
        f"{'normalised':>{12 + wide}}{'agreement':>{11 + wide}}"
    )

    def cell(values: list[float], width: int, digits: int) -> str:
        mean, err = _stats(values)
        text = f"{mean:.{digits}f}" + (f" ± {err:.{digits}f}" if len(values) > 1 else "")
        return f"{text:>{width + wide}}"

    for row in rows:
        print(
            f"{row['label']:26}{cell(row['probe'], 18, 3)}{cell(row['return'], 9, 1)}"
            f"{cell(row['normalised_return'], 12, 3)}{cell(row['agreement'], 11, 3)}"
        )
    print(f"{'BC on the 1% alone':26}{'—':>{18 + wide}}{'':>{9 + wide}}{cell(labelled_bc, 12, 3)}")
    print(
        "\naction probe nmse: least-squares probe from z to the true action (one-hot) on held-out"
        "\nepisodes; 0 = z holds the action, 1 = none of it. normalised: the composed policy's"
        "\nreturn over that of BC on fully labelled data; agreement: share of held-out steps where"
        "\nit picks the behaviour policy's action."
    )
    picture = out / "pipeline.png"
    save_plot(picture, rows, labelled_bc, len(seeds))
    print(f"\nsaved {picture} and {out / 'grid_frames.png'}; runs under {out / 'pipeline'}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
