"""The linear LAM: gradient training reaches the PCA optimum, and the paper's effects hold.

Data come straight from the SPEC's formulas, o' = o + X a + σ_iid n + σ_exo Y b, in a small
space (d_o = 16, d_a = 4) so every training run takes a few seconds on two cores.
"""

import math

import numpy as np
import pytest
import torch

from lam_models.linear import (
    LinearLAM,
    LinearLAMConfig,
    analytic_optimum,
    analytic_optimum_from_moment,
    optimality_gap,
    train_linear_lam,
)
from lam_models.metrics import linear_probe_report

D_O, D_A, D_B = 16, 4, 4
SIGMA_IID = 0.1
BATCH = 128
# Settings found to converge to well within 1% of the optimum in this small space.
FAST = dict(lr=3e-2, init_scale=0.1, steps=1200, batch_size=BATCH)


def structure(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """X (d_o×d_a) and Y (d_o×d_b) with orthonormal columns, Y orthogonal to X (one QR)."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(D_O, D_A + D_B, generator=g))[0]
    return Q[:, :D_A], Q[:, D_A:]


X, Y = structure()


def transitions(n: int, gen: torch.Generator, sigma_iid=SIGMA_IID, sigma_exo=0.0) -> dict:
    """o ~ N(0, I), a ~ N(0, I), o' = o + q + ε with q = X a, ε = σ_iid n + σ_exo Y b."""
    o = torch.randn(n, D_O, generator=gen)
    a = torch.randn(n, D_A, generator=gen)
    b = torch.randn(n, D_B, generator=gen)
    q = a @ X.T
    eps = sigma_iid * torch.randn(n, D_O, generator=gen) + sigma_exo * b @ Y.T
    return dict(o=o, o_next=o + q + eps, a=a, q=q, eps=eps)


def sampler(seed: int, label_fraction: float = 1.0, **noise):
    """sample_batch(step) for the trainer; unlabelled actions are NaN, as in the datasets."""
    gen = torch.Generator().manual_seed(seed)

    def sample_batch(step: int):
        t = transitions(BATCH, gen, **noise)
        mask = torch.rand(BATCH, generator=gen) < label_fraction
        return t["o"], t["o_next"], torch.where(mask[:, None], t["a"], torch.nan), mask

    return sample_batch


def population_moment(sigma_iid=SIGMA_IID, sigma_exo=0.0) -> torch.Tensor:
    """E[(o'−o)(o'−o)ᵀ] = X Xᵀ + σ_iid² I + σ_exo² Y Yᵀ, exactly."""
    X64, Y64 = X.double(), Y.double()
    return (
        X64 @ X64.T
        + sigma_iid**2 * torch.eye(D_O, dtype=torch.float64)
        + sigma_exo**2 * Y64 @ Y64.T
    )


def relative_frobenius(M: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """‖M‖_F / ‖reference‖_F per model, for batched (M, ·, ·) tensors."""
    return M.flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)


# --------------------------------------------------------------------------------------------
# Analytic optimum
# --------------------------------------------------------------------------------------------


def test_analytic_minimum_is_sum_of_trailing_eigenvalues():
    t = transitions(20_000, torch.Generator().manual_seed(5))
    delta = (t["o_next"] - t["o"]).double()
    d_z = 3
    opt = analytic_optimum(delta, d_z)

    # Independently: numpy's eigenvalues of the second moment, sorted descending.
    eig = np.sort(np.linalg.eigvalsh((delta.T @ delta).numpy() / len(delta)))[::-1]
    assert opt.min_loss == pytest.approx(eig[d_z:].sum(), rel=1e-10)
    np.testing.assert_allclose(opt.eigenvalues.numpy(), eig, rtol=1e-9, atol=1e-12)

    # The PCA solution: A = I, B orthonormal top eigenvectors, D = Bᵀ, C = −D.
    assert torch.equal(opt.A, torch.eye(D_O, dtype=torch.float64))
    torch.testing.assert_close(opt.B.T @ opt.B, torch.eye(d_z, dtype=torch.float64))
    torch.testing.assert_close(opt.C, -opt.D)
    torch.testing.assert_close(opt.D, opt.B.T)
    # ... and its loss on the same transitions is that minimum, exactly.
    o, o_next = t["o"].double(), t["o_next"].double()
    z = o @ opt.C.T + o_next @ opt.D.T
    loss = (o @ opt.A.T + z @ opt.B.T - o_next).square().sum(-1).mean()
    assert float(loss) == pytest.approx(opt.min_loss, rel=1e-9)

    # With 20k samples the sample minimum is close to the population one: d_o − d_a of σ² plus
    # the one unit eigenvalue of X Xᵀ that d_z = 3 < d_a = 4 leaves out.
    expected = (D_A - d_z) * (1 + SIGMA_IID**2) + (D_O - D_A) * SIGMA_IID**2
    population = analytic_optimum_from_moment(population_moment(), d_z).min_loss
    assert population == pytest.approx(expected, rel=1e-6)  # X is float32
    assert opt.min_loss == pytest.approx(expected, rel=0.05)


@pytest.fixture(scope="module", params=[2, 4], ids=lambda d_z: f"d_z={d_z}")
def trained(request):
    """Two models trained together: κ = 0 and κ = 0.5 (d_z = 2 < d_a, and d_z = d_a)."""
    d_z = request.param
    config = LinearLAMConfig(d_o=D_O, d_a=D_A, d_z=d_z, kappa=(0.0, 0.5), num_models=2, **FAST)
    model, history = train_linear_lam(config, sampler(seed=1))
    return d_z, model, history


def test_trainer_reaches_the_pca_optimum(trained):
    d_z, model, history = trained
    t = transitions(100_000, torch.Generator().manual_seed(2))
    loss = model.reconstruction_loss(t["o"], t["o_next"]).double()
    minimum = analytic_optimum_from_moment(population_moment(), d_z).min_loss
    # Both models, with and without augmentation, within 1% of the analytic minimum.
    assert torch.all((loss / minimum - 1).abs() < 0.01), (loss, minimum)
    # optimality_gap compares with the minimum on the same transitions.
    gap = optimality_gap(model, t["o"], t["o_next"])
    torch.testing.assert_close(gap.loss, loss)
    assert torch.all(gap.relative.abs() < 0.02)
    assert history.loss.shape == (FAST["steps"], 2) and np.isfinite(history.loss).all()


def test_augmentation_drives_A_to_identity_and_C_to_minus_D(trained):
    _, model, _ = trained
    I = torch.eye(D_O).expand(2, D_O, D_O)
    with torch.no_grad():
        A_error = relative_frobenius(model.A - I, I)
        C_plus_D = relative_frobenius(model.C + model.D, model.D)
    # κ = 0.5 pins the degenerate directions of the optimum: A = I, C = −D ...
    assert A_error[1] < 0.05 and C_plus_D[1] < 0.05, (A_error, C_plus_D)
    # ... which without augmentation the loss leaves free (the over-parameterised model).
    assert A_error[0] > 0.3 and C_plus_D[0] > 0.3, (A_error, C_plus_D)


def test_shared_augmentation_cancels_at_the_optimum():
    """κ_1 is shared by the IDM inputs and κ_2 by the FDM input and target: at A = I, C = −D the
    augmented loss equals the clean one exactly. Independent draws would add noise to z."""
    config = LinearLAMConfig(d_o=D_O, d_a=D_A, d_z=D_A, kappa=1.0)
    model = LinearLAM(config)
    t = transitions(4096, torch.Generator().manual_seed(3))
    opt = analytic_optimum(t["o_next"] - t["o"], D_A)
    with torch.no_grad():
        for name in "ABCD":
            getattr(model, name).copy_(getattr(opt, name)[None].float())
    augmented = model.loss(t["o"], t["o_next"], generator=torch.Generator().manual_seed(0))
    clean = model.reconstruction_loss(t["o"], t["o_next"])
    torch.testing.assert_close(augmented.reconstruction, clean, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Action head
# --------------------------------------------------------------------------------------------


def test_action_head_recovers_the_action_under_strong_other_agents():
    """σ_exo = 2 > 1: Y b dominates Cov(o'−o), so with d_z = d_a < d_a + d_b the latent fits the
    other agents first. 10% labels and λ_a = 10 in the head make it capture the action."""
    noise = dict(sigma_iid=0.0, sigma_exo=2.0)
    config = LinearLAMConfig(
        d_o=D_O,
        d_a=D_A,
        d_z=D_A,
        use_action_head=True,
        action_weight=(0.0, 10.0),  # model 0 without the head's loss, model 1 with it
        num_models=2,
        **FAST,
    )
    model, history = train_linear_lam(config, sampler(seed=4, label_fraction=0.1, **noise))
    assert np.isfinite(history.loss).all()

    train = transitions(5000, torch.Generator().manual_seed(5), **noise)
    test = transitions(5000, torch.Generator().manual_seed(6), **noise)
    with torch.no_grad():
        z_train, z_test = (
            model.latent(train["o"], train["o_next"]),
            model.latent(test["o"], test["o_next"]),
        )

    def targets(t):
        return {k: t[k] for k in ("a", "q", "eps", "o")}

    without, with_head = (
        linear_probe_report(z_train[m], z_test[m], targets(train), targets(test)) for m in (0, 1)
    )
    assert without["nmse_a"] > 0.9 and without["nmse_eps"] < 0.5, without
    assert with_head["nmse_a"] < 0.05 and with_head["nmse_eps"] > 0.9, with_head
    assert with_head["llo"] > 1.9


def test_unlabelled_nan_actions_never_reach_the_loss():
    config = LinearLAMConfig(d_o=D_O, d_a=D_A, d_z=2, use_action_head=True, kappa=0.1)
    model = LinearLAM(config)
    t = transitions(64, torch.Generator().manual_seed(7))
    mask = torch.arange(64) % 3 == 0
    a_nan = torch.where(mask[:, None], t["a"], torch.nan)
    a_other = torch.where(mask[:, None], t["a"], 123.0)

    def loss_and_grads(a, label_mask):
        model.zero_grad()
        terms = model.loss(t["o"], t["o_next"], a, label_mask, torch.Generator().manual_seed(0))
        terms.total.sum().backward()
        return terms, [p.grad.clone() for p in model.parameters()]

    terms, grads = loss_and_grads(a_nan, mask)
    assert all(torch.isfinite(x).all() for x in (*terms, *grads))
    # What an unlabelled entry holds has no influence at all.
    terms_other, grads_other = loss_and_grads(a_other, mask)
    torch.testing.assert_close(terms.total, terms_other.total)
    for g, g_other in zip(grads, grads_other, strict=True):
        torch.testing.assert_close(g, g_other)
    # Without a label_mask, the finite rows are the labelled ones.
    torch.testing.assert_close(loss_and_grads(a_nan, None)[0].total, terms.total)

    # A batch with no label at all: the action term is 0, and still no NaN anywhere.
    terms, grads = loss_and_grads(torch.full_like(t["a"], torch.nan), torch.zeros(64, dtype=bool))
    assert terms.action.eq(0).all()
    assert all(torch.isfinite(x).all() for x in (*terms, *grads))
    # Neither in training on unlabelled data.
    short = LinearLAMConfig(
        d_o=D_O, d_a=D_A, d_z=2, use_action_head=True, steps=20, batch_size=BATCH
    )
    _, history = train_linear_lam(short, sampler(seed=8, label_fraction=0.0))
    assert np.isfinite(history.loss).all() and (history.action == 0).all()


def test_loss_matches_the_formulas_per_model():
    """Per-model data (M, N, d_o), κ = 0: the batched loss is each model's formula."""
    M, N, d_z, lam = 3, 50, 2, 0.7
    config = LinearLAMConfig(
        d_o=D_O, d_a=D_A, d_z=d_z, use_action_head=True, action_weight=lam, num_models=M
    )
    model = LinearLAM(config)
    gen = torch.Generator().manual_seed(9)
    o, o_next = torch.randn(M, N, D_O, generator=gen), torch.randn(M, N, D_O, generator=gen)
    a = torch.randn(M, N, D_A, generator=gen)
    mask = torch.rand(M, N, generator=gen) < 0.5
    terms = model.loss(o, o_next, torch.where(mask[..., None], a, torch.nan), mask)
    with torch.no_grad():
        for m in range(M):
            A, B, C, D, E = (getattr(model, k)[m] for k in "ABCDE")
            z = o[m] @ C.T + o_next[m] @ D.T
            reconstruction = (o[m] @ A.T + z @ B.T - o_next[m]).square().sum(-1).mean()
            action = (z @ E.T - a[m])[mask[m]].square().sum(-1).mean()
            torch.testing.assert_close(terms.reconstruction[m], reconstruction)
            torch.testing.assert_close(terms.action[m], action)
            torch.testing.assert_close(terms.total[m], reconstruction + lam * action)


def test_surrogate_latent_is_the_latent_when_A_is_identity():
    model = LinearLAM(LinearLAMConfig(d_o=D_O, d_a=D_A, d_z=3, num_models=2))
    with torch.no_grad():
        model.A.copy_(torch.eye(D_O))
    t = transitions(32, torch.Generator().manual_seed(10))
    z = model.latent(t["o"], t["o_next"])
    assert z.shape == (2, 32, 3)
    # z̃ = B⁺(A o + B z − o) = B⁺ B z = z for a full-rank B.
    torch.testing.assert_close(model.surrogate_latent(t["o"], t["o_next"]), z, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(d_z=0), r"d_z must be >= 1, got 0"),
        (dict(d_z=17), r"d_z must be <= d_o = 16, got 17"),
        (dict(kappa=-0.1), r"kappa must be a finite number >= 0, got -0.1"),
        (dict(kappa=math.nan), r"kappa must be a finite number >= 0, got nan"),
        (dict(kappa=(0.0, 0.1)), r"kappa has 2 values but num_models = 1"),
        (dict(action_weight=-1.0), r"action_weight must be .* got -1.0"),
        (dict(lr=0.0), r"lr must be a finite number > 0, got 0.0"),
        (dict(batch_size=0), r"batch_size must be >= 1, got 0"),
        (dict(d_o=2.5), r"d_o must be an integer, got 2.5"),
        (dict(lr_schedule="linear"), r"lr_schedule must be one of .* got 'linear'"),
    ],
)
def test_bad_config_names_the_value(change, message):
    with pytest.raises(ValueError, match=message):
        LinearLAMConfig(**{**dict(d_o=D_O, d_a=D_A, d_z=2), **change})


def test_trainer_rejects_a_sampler_of_the_wrong_shape():
    config = LinearLAMConfig(d_o=D_O, d_a=D_A, d_z=2, steps=5, batch_size=BATCH)

    def wrong(step):  # o and o' in 8 dimensions instead of d_o = 16
        o = torch.zeros(BATCH, 8)
        return o, o, torch.zeros(BATCH, D_A), torch.ones(BATCH, dtype=bool)

    with pytest.raises(ValueError, match=r"o of shape \(128, 8\); expected \(128, 16\)"):
        train_linear_lam(config, wrong)
