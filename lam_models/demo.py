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
import sys
import time
from pathlib import Path

import lam_envs.demo as env_demo
from lam_envs.cli import Parser
from lam_envs.collect import CollectConfig, collect
from lam_models.pipeline import run_pipeline

DATASET_ID = "lam-envs/demo-grid-snaking-v0"
METHODS = (  # (label, LAM, its settings: the LAOM head's supervision on the labelled subset)
    ("VQ LAM (LAPO)", "vq", {}),
    ("LAOM-style, no labels", "laom", {}),
    ("LAOM-style + 1% labels", "laom", {"action_head": True, "action_weight": 1.0}),
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m lam_models.demo",
        description="Environments, a dataset with 1%% labels, three LAMs through the "
        "LAPO-style pipeline, a table and plots, in about two minutes.",
    )
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of data and models (default 0)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for the tests")
    return p


def save_plot(path: Path, rows: list[dict], labelled_bc: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["label"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.bar(labels, [row["normalised_return"] for row in rows], color="tab:blue")
    left.axhline(labelled_bc, color="tab:gray", ls="--", label="BC on the 1% alone")
    left.set_ylabel("return / return of BC on all labels")
    left.set_ylim(0, 1.1)
    left.legend(loc="upper left", fontsize=8)
    left.set_title("the composed policy decoder(π(z | o))", fontsize=10)
    right.bar(labels, [row["probe"] for row in rows], color="tab:orange")
    right.set_ylabel("probe nmse of the true action from z")
    right.set_ylim(0, 1.1)
    right.set_title("what the latent holds (0: the action; 1: none of it)", fontsize=10)
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("GridLAM, low noise row, snaking policy (ε = 0.3), 1% of actions labelled")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    print("== 1. The environments and their behaviour policies\n")
    env_demo.main(["--out", str(out), "--seed", str(args.seed)])

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

    print(
        "\n== 3. Three LAMs through the LAPO-style pipeline (train, relabel, BC, decode, roll out)"
    )
    rows = []
    for label, lam, options in METHODS:
        print(f"\n-- {label}")
        name = lam + ("-head" if options.get("action_head") else "")
        result = run_pipeline(
            summary.path,
            lam=lam,
            out_dir=out / "pipeline" / name,
            quick=args.quick,
            progress=not args.quick,
            seed=args.seed,
            overwrite=True,
            lam_options=options,
        )
        rows.append(
            {
                "label": label,
                "probe": result["lam_probe"]["nmse_action"],
                "return": result["composed_return"],
                "normalised_return": result["normalised_return"],
                "agreement": result["composed_agreement"],
            }
        )

    # The baselines do not depend on the LAM: every run trains the same ones, same seed.
    full = result["full_bc_return"]
    labelled_bc = result["labelled_bc_return"] / full if full else float("nan")
    print("\n== 4. What the latents captured, and what they are worth\n")
    print(f"{'method':26}{'action probe nmse':>18}{'return':>9}{'normalised':>12}{'agreement':>11}")
    for row in rows:
        print(
            f"{row['label']:26}{row['probe']:>18.3f}{row['return']:>9.1f}"
            f"{row['normalised_return']:>12.3f}{row['agreement']:>11.3f}"
        )
    print(f"{'BC on the 1% alone':26}{'—':>18}{'':>9}{labelled_bc:>12.3f}")
    print(
        "\naction probe nmse: least-squares probe from z to the true action (one-hot) on held-out"
        "\nepisodes; 0 = z holds the action, 1 = none of it. normalised: the composed policy's"
        "\nreturn over that of BC on fully labelled data; agreement: share of held-out steps where"
        "\nit picks the behaviour policy's action."
    )
    picture = out / "pipeline.png"
    save_plot(picture, rows, labelled_bc)
    print(f"\nsaved {picture} and {out / 'grid_frames.png'}; runs under {out / 'pipeline'}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
