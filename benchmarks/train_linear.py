"""Linear-LAM training speed: our batched trainer against a plain torch loop, in one run.

At d_o = 128, d_a = 8, d_z = 8, batch 128, other agents σ_exo = 0.5 (d_b = 8, so the analytic
minimum is 8 · 0.25 = 2 and "within 1%" is a real test), the same Adam settings (lr 3e-2,
cosine schedule) for both:

- ours:      ``LinearLAM.train`` (``lam_models.lams.linear``) on fresh transitions drawn in
             torch from the same formulas, for M = 1 model and for M = 16 models trained as
             one batch (the way the reproduction sweeps seeds and settings); on
             ``FreshBatches`` (the published runs' data: every copy's fresh batches drawn
             from the formulas, 16 seeds); and once more on the stream path
             (``StreamSource``: a pool drawn once from the native vector env, batches by
             index), whose finite pool adds a small overfitting gap.
- baseline:  the same model written as four ``nn.Linear`` layers (A, B, C, D) in a plain
             torch loop, with each batch sampled in numpy at every step from the environment's
             formulas (o ~ N(0, I), a ~ N(0, I), o' = o + X a + σ_exo Y b).

Prints Adam steps per second (per model for M = 16) and the time to reach the analytic
optimum within 1%: the shortest schedule from ``--schedules`` whose final reconstruction
loss on a fixed held-out set is within 1% of the PCA minimum of that set, timed end to end
(data included). Ratios are ours / baseline.

Usage:  python benchmarks/train_linear.py [--threads 1] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from lam_models.lams.linear import (
    LinearConfig,
    LinearLAM,
    StreamConfig,
    StreamSource,
    analytic_optimum,
    optimality_gap,
)
from lam_models.lams.linear_fresh import FreshBatches, FreshLaw
from lam_models.seeding import Stream
from lam_models.split import DataSpec, Transitions

D_O, D_A, D_B, D_Z, SIGMA_EXO, BATCH, LR = 128, 8, 8, 8, 0.5, 128, 3e-2
ENV = {"d_o": D_O, "d_a": D_A, "d_b": D_B, "sigma_exo": SIGMA_EXO}
POOL = 65536


def held_out_set() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """A fixed evaluation set from the env, and its X, Y (both methods use the same ones)."""
    source = StreamSource(StreamConfig(env_kwargs=ENV, train_transitions=16384), seed=99)
    pool = source._pool
    from lam_envs.envs.linear import effect_matrices

    x, y = effect_matrices(source.env_config)
    return torch.from_numpy(pool["obs"]), torch.from_numpy(pool["next_obs"]), x, y


# ------------------------------------------------------------------------------- ours


def ours(steps: int, num_models: int, data: str = "torch") -> tuple[float, float, float]:
    """(seconds in all, seconds of training, worst relative gap on the held-out set).

    data "torch": fresh transitions drawn in torch at every step from its formulas with
    the env's X, Y (the same data as the baseline, without numpy); "fresh":
    ``FreshBatches``, each copy's own seed; "env": the stream path, a pool of ``POOL``
    transitions drawn once from the native vector env, batches by index.
    """
    start = time.perf_counter()
    config = LinearConfig(latent_dim=D_Z, lr=LR, steps=steps, batch_size=BATCH, log_every=steps)
    if data == "fresh":
        law = FreshLaw(D_O, D_A, D_B, "other_agents", SIGMA_EXO)
        source = FreshBatches([law] * num_models, list(range(num_models)))
    elif data == "env":
        source = [
            StreamSource(StreamConfig(env_kwargs=ENV, train_transitions=POOL), seed=s)
            for s in range(num_models)
        ]
    else:
        source = FormulaData(num_models)
    train_start = time.perf_counter()
    lam = LinearLAM.train(config, source, list(range(num_models)), device="cpu")
    end = time.perf_counter()
    if data == "fresh":  # each copy's own X and Y (structure_seed = its seed): its own set
        held_out = FreshBatches(source.laws, source.seeds, stream=Stream.STREAM_RECON).draw(16384)
        gap = optimality_gap(lam, held_out["obs"], held_out["next_obs"])
    else:
        gap = optimality_gap(lam, EVAL_O, EVAL_NEXT)
    return end - start, end - train_start, float(gap.relative.max())


class FormulaData:
    """Fresh transitions drawn in torch at every step from the environment's formulas with the
    env's X, Y (the baseline's data, without numpy), one batch per copy."""

    def __init__(self, copies: int):
        self.num_copies, self.spec = copies, DataSpec("linear", (D_O,), False, D_A)
        self.has_labels = torch.ones(copies, dtype=torch.bool)
        self.gen = torch.Generator().manual_seed(0)
        self.xt, self.yt = torch.from_numpy(X.T.copy()), torch.from_numpy(SIGMA_EXO * Y.T)
        self.mask = torch.ones(copies, BATCH, dtype=torch.bool)

    def sample(self, batch_size, **_):
        m = self.num_copies
        o = torch.randn(m, batch_size, D_O, generator=self.gen)
        a = torch.randn(m, batch_size, D_A, generator=self.gen)
        b = torch.randn(m, batch_size, D_B, generator=self.gen)
        o_next = torch.baddbmm(o + b @ self.yt, a, self.xt.expand(m, -1, -1))
        return Transitions(o, o_next, o_next, a, self.mask)


# --------------------------------------------------------------------------- baseline


class PlainLAM(nn.Module):
    """The linear LAM as four nn.Linear layers: z = C o + D o', ô' = A o + B z."""

    def __init__(self):
        super().__init__()
        self.C = nn.Linear(D_O, D_Z, bias=False)
        self.D = nn.Linear(D_O, D_Z, bias=False)
        self.A = nn.Linear(D_O, D_O, bias=False)
        self.B = nn.Linear(D_Z, D_O, bias=False)

    def forward(self, o, o_next):
        return self.A(o) + self.B(self.C(o) + self.D(o_next))


def baseline(steps: int) -> tuple[float, float, float]:
    start = time.perf_counter()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = PlainLAM()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    for _ in range(steps):
        o = rng.standard_normal((BATCH, D_O)).astype(np.float32)
        a = rng.standard_normal((BATCH, D_A)).astype(np.float32)
        b = rng.standard_normal((BATCH, D_B)).astype(np.float32)
        o_next = o + a @ X.T + SIGMA_EXO * b @ Y.T
        o, o_next = torch.from_numpy(o), torch.from_numpy(o_next)
        loss = (model(o, o_next) - o_next).square().sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    end = time.perf_counter()
    with torch.no_grad():
        loss = float((model(EVAL_O, EVAL_NEXT) - EVAL_NEXT).square().sum(-1).mean())
    minimum = analytic_optimum(EVAL_NEXT - EVAL_O, D_Z).min_loss
    return end - start, end - start, (loss - minimum) / minimum


# ------------------------------------------------------------------------------- main


def time_to_optimum(run, schedules) -> tuple[float, int | None, float]:
    """Seconds and steps of the shortest schedule that ends within 1% of the optimum."""
    gap = float("nan")
    for steps in schedules:
        seconds, _, gap = run(steps)
        if gap < 0.01:
            return seconds, steps, gap
    return float("nan"), None, gap


def main() -> None:
    global EVAL_O, EVAL_NEXT, X, Y
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--rate-steps", type=int, default=600, help="steps timed for the rate")
    parser.add_argument(
        "--schedules", type=int, nargs="+", default=[250, 500, 750, 1000, 1500, 2000, 3000]
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    EVAL_O, EVAL_NEXT, X, Y = held_out_set()
    X, Y = X.astype(np.float32), Y.astype(np.float32)

    ours(50, 1), baseline(50)  # warm up: lazy imports and first-call costs of both
    n, M = args.rate_steps, 16
    rate_base = n / baseline(n)[1]
    rate_ours = n / ours(n, 1)[1]
    rate_batched = M * n / ours(n, M)[1]
    rate_env = n / ours(n, 1, data="env")[1]
    rate_fresh = M * n / ours(n, M, data="fresh")[1]
    t_base, s_base, g_base = time_to_optimum(baseline, args.schedules)
    t_ours, s_ours, g_ours = time_to_optimum(lambda k: ours(k, 1), args.schedules)
    t_batch, s_batch, g_batch = time_to_optimum(lambda k: ours(k, M), args.schedules)
    t_env, s_env, g_env = time_to_optimum(lambda k: ours(k, 1, data="env"), args.schedules)
    t_fr, s_fr, g_fr = time_to_optimum(lambda k: ours(k, M, data="fresh"), args.schedules)
    rows = [
        ("baseline nn.Linear loop", rate_base, t_base, s_base, g_base, ""),
        ("ours, 1 model", rate_ours, t_ours, s_ours, g_ours, ""),
        (f"ours, {M} models batched", rate_batched, t_batch / M, s_batch, g_batch, " (per model)"),
        ("ours, env pool 65536", rate_env, t_env, s_env, g_env, " (incl. drawing the pool)"),
        (f"ours, {M} on FreshBatches", rate_fresh, t_fr / M, s_fr, g_fr, " (per model)"),
    ]
    print(
        f"linear LAM, d_o={D_O} d_a={D_A} d_z={D_Z} batch={BATCH}, σ_exo={SIGMA_EXO} d_b={D_B}, "
        f"torch threads={args.threads}"
    )
    print(f"{'method':<26}{'Adam steps/s':>14}{'time to 1% of optimum':>26}{'gap':>9}")
    for name, rate, t, steps, gap, note in rows:
        to = f"{t:.2f} s ({steps} steps)" if steps else "not reached"
        print(f"{name:<26}{rate:>14,.0f}{to:>26}{gap:>+9.2%}{note}")
    print(f"ratios against the baseline (higher is better for ours), {M} models batched per model:")
    for name, rate, t, *_ in rows[1:]:
        print(f"  {name:<26} steps/s {rate / rate_base:5.2f}x   time to 1% {t_base / t:5.2f}x")


if __name__ == "__main__":
    main()
