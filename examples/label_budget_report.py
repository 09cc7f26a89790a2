"""The label-budget study's report (examples/label_budget_study.py): the mean ± s.e. table,
the testbed's checks, the paper's two findings, and the plots, from the study's CSV rows."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lam_models.evaluation.metrics import mean_stderr  # noqa: E402

#: The label fraction the testbed's checks read (the paper's few-label regime).
CHECK_FRACTION = 0.025


def aggregate(rows: list[dict], setting: str, method: str, metric: str):
    """(label fractions, mean, standard error over seeds) of ``metric``."""
    by_f = defaultdict(list)
    for r in rows:
        if r["setting"] == setting and r["method"] == method:
            by_f[r["label_fraction"]].append(r[metric])
    xs = np.array(sorted(by_f))
    stats = np.array([mean_stderr(by_f[x]) for x in xs]).reshape(-1, 2)
    return xs, stats[:, 0], stats[:, 1]


def order(values: Sequence[str], reference: Sequence[str]) -> list[str]:
    """The distinct ``values`` in ``reference``'s order (others last, alphabetical)."""
    return sorted(
        set(values), key=lambda v: (list(reference).index(v) if v in reference else 99, v)
    )


def plot(
    rows: list[dict],
    path: Path,
    metric: str,
    ylabel: str,
    labels: Mapping[str, str],
    settings_order: Sequence[str],
) -> None:
    """One panel per setting that ran the LAMs, one line per method (mean ± s.e. over
    seeds); BC on all labels is the dotted line at its own return. The action's probe
    (``nmse_action``) has the distractors' probe beside it, dotted with crosses."""
    lam_rows = [r for r in rows if r["method"] != "full_bc"]
    settings = order([r["setting"] for r in lam_rows], settings_order)
    methods = order([r["method"] for r in lam_rows], list(labels))
    if metric.startswith("nmse"):
        methods = [m for m in methods if m != "labelled_bc"]
    seeds = len({r["seed"] for r in rows})
    cols = min(3, max(1, len(settings)))
    nrows = max(1, math.ceil(len(settings) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.8 * nrows), squeeze=False)
    for ax, setting in zip(axes.flat, settings, strict=False):
        for method in methods:
            xs, m, e = aggregate(lam_rows, setting, method, metric)
            style = "--" if method == "labelled_bc" else "-"
            (line,) = ax.plot(xs, m, style, marker="o", label=labels.get(method, method))
            ax.fill_between(xs, m - e, m + e, color=line.get_color(), alpha=0.2)
            if metric == "nmse_action":  # beside it, what z holds of the distractors
                _, dm, de = aggregate(lam_rows, setting, method, "nmse_distractor")
                if not np.isnan(dm).all():
                    ax.plot(xs, dm, ":", marker="x", color=line.get_color())
                    ax.fill_between(xs, dm - de, dm + de, color=line.get_color(), alpha=0.1)
        if metric == "normalised_return":
            ax.axhline(1.0, color="k", lw=0.8, ls=":", label=labels.get("full_bc", "full_bc"))
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:.1%}" for x in xs])
        ax.minorticks_off()
        ax.set(xlabel="labelled trajectories", ylabel=ylabel, title=setting.replace("_", " "))
        ax.set_ylim(-0.05, 1.3)
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Label budget on the distracting grid (mean ± s.e., {seeds} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _values(rows, setting, method, metric, fraction=None) -> list[float]:
    return [
        r[metric]
        for r in rows
        if r["setting"] == setting
        and r["method"] == method
        and (fraction is None or r["label_fraction"] == fraction)
    ]


def _stat(values: list[float]) -> str:
    if not values:
        return "—"
    mean, err = mean_stderr(values)
    return f"{mean:.3f} ± {err:.3f}"


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def checks(rows: list[dict], control: str, main: str) -> list[str]:
    """The testbed's four checks and the paper's two findings, each a line with its numbers
    (means ± s.e. over seeds; "not run" where the rows lack what a check reads)."""
    f = CHECK_FRACTION
    lines = ["The testbed's checks (mean ± s.e. over seeds):"]

    def verdict(ok: bool | None) -> str:
        return "not run" if ok is None else ("holds" if ok else "FAILS")

    def finding(shown: bool | None) -> str:
        return "not run" if shown is None else ("shown" if shown else "not shown")

    # 1. Failure mode: the unsupervised latents hold more of the distractors than the action.
    for method in ("laom", "vq"):
        a = _values(rows, main, method, "nmse_action", f)
        d = _values(rows, main, method, "nmse_distractor", f)
        ok = (_mean(d) < _mean(a)) if a and d else None
        lines.append(
            f"  1. failure mode, {main}, {method}: nmse distractor {_stat(d)} < nmse action "
            f"{_stat(a)}: {verdict(ok)}"
        )
    # 2. Well-posed: BC on all labels on every preset reaches 0.9 of the clean control's.
    clean = _mean(_values(rows, control, "full_bc", "return"))
    presets = order([r["setting"] for r in rows if r["method"] == "full_bc"], [control, main])
    for preset in presets:
        returns = _values(rows, preset, "full_bc", "return")
        ratio = _mean(returns) / clean if clean and returns else math.nan
        ok = None if math.isnan(ratio) else ratio >= 0.9
        behaviour = _mean(_values(rows, preset, "full_bc", "behaviour_return"))
        lines.append(
            f"  2. well-posed, {preset}: BC on all labels {_stat(returns)} = {ratio:.2f} of "
            f"{control}'s (behaviour policy {behaviour:.1f}): {verdict(ok)}"
        )
    # 3. Few labels alone are not enough on the main preset.
    bc = _values(rows, main, "labelled_bc", "normalised_return", f)
    ok = (_mean(bc) <= 0.6) if bc else None
    lines.append(
        f"  3. few labels alone, {main}: BC on the {f:.1%} labelled {_stat(bc)} of BC on all "
        f"labels (≤ 0.6): {verdict(ok)}"
    )
    # 4. The clean control works: LAOM then the decoder.
    laom = _values(rows, control, "laom", "normalised_return", f)
    ok = (_mean(laom) >= 0.8) if laom else None
    lines.append(
        f"  4. clean control, {control}: LAOM then the decoder at {f:.1%} labels {_stat(laom)} "
        f"of BC on all labels (≥ 0.8): {verdict(ok)}"
    )
    lines += ["", f"The paper's two findings, on {main} (reported, not tuned for):"]
    lp, vp = (_values(rows, main, m, "nmse_action", f) for m in ("laom", "vq"))
    shown = None if not (lp and vp) else _mean(lp) < _mean(vp)
    lines.append(
        f"  a. LAOM's latent probes the action better than LAPO/VQ's: nmse {_stat(lp)} vs "
        f"{_stat(vp)}: {finding(shown)}"
    )
    lab, plain = (_values(rows, main, m, "normalised_return", f) for m in ("laom+labels", "laom"))
    shown = None if not (lab and plain) else _mean(lab) > _mean(plain)
    ratio = _mean(lab) / _mean(plain) if lab and plain and _mean(plain) > 0 else math.nan
    lines.append(
        f"  b. LAOM + labels returns more than LAOM then the decoder at {f:.1%}: {_stat(lab)} "
        f"vs {_stat(plain)} (×{ratio:.2f}): {finding(shown)}"
    )
    return lines


def summary(
    rows: list[dict],
    settings_order: Sequence[str],
    methods_order: Sequence[str],
    control: str,
    main: str,
) -> str:
    """The mean ± s.e. table, then :func:`checks`."""
    lam_rows = [r for r in rows if r["method"] != "full_bc"]
    settings = order([r["setting"] for r in lam_rows], settings_order)
    methods = order([r["method"] for r in lam_rows], methods_order)
    lines = [
        f"{'setting':<24}{'method':<13}{'labels':>7}{'probe nmse(a)':>17}"
        f"{'nmse(distr.)':>17}{'norm. return':>17}"
    ]
    for setting in settings:
        for method in methods:
            xs, m, e = aggregate(lam_rows, setting, method, "normalised_return")
            _, pm, pe = aggregate(lam_rows, setting, method, "nmse_action")
            _, dm, de = aggregate(lam_rows, setting, method, "nmse_distractor")
            for i, x in enumerate(xs):
                probe = "—" if math.isnan(pm[i]) else f"{pm[i]:.3f} ± {pe[i]:.3f}"
                distr = "—" if math.isnan(dm[i]) else f"{dm[i]:.3f} ± {de[i]:.3f}"
                lines.append(
                    f"{setting:<24}{method:<13}{x:>7.1%}{probe:>17}{distr:>17}"
                    f"{m[i]:>10.3f} ± {e[i]:.3f}"
                )
    return "\n".join([*lines, "", *checks(rows, control, main)])
