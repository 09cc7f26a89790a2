"""The linear LAM: gradient training reaches the PCA optimum, and the paper's effects hold.

Data come straight from the environment's formulas, o' = o + X a + σ_iid n + σ_exo Y b, in a small
space (d_o = 16, d_a = 4) so every training run takes a few seconds on two cores.
"""

import math

import numpy as np
import pytest
import torch

from lam_models.evaluation.metrics import linear_probe_report
from lam_models.lams.linear import (
    LinearConfig,
    LinearLAM,
    analytic_optimum,
    analytic_optimum_from_moment,
    optimality_gap,
)
from lam_models.split import DataSpec, Transitions

D_O, D_A, D_B = 16, 4, 4
SIGMA_IID = 0.1
BATCH = 128
SPEC = DataSpec("linear", (D_O,), False, D_A)
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


class FormulaData:
    """The data interface a LAM trains on (``lam_models.split.CopyBatches``), drawing fresh
    transitions from the formulas; every copy sees the same batch. Unlabelled actions are
    NaN, as in the datasets."""

    spec = SPEC

    def __init__(self, copies: int, seed: int, label_fraction: float = 1.0, **noise):
        self.num_copies, self.label_fraction, self.noise = copies, label_fraction, noise
        self.gen = torch.Generator().manual_seed(seed)

    @property
    def has_labels(self) -> torch.Tensor:
        return torch.full((self.num_copies,), self.label_fraction > 0)

    def sample(self, batch_size: int, **_) -> Transitions:
        t = transitions(batch_size, self.gen, **self.noise)
        mask = torch.rand(batch_size, generator=self.gen) < self.label_fraction
        a = torch.where(mask[:, None], t["a"], torch.nan)
        m = self.num_copies
        o, o_next = (x.expand(m, *x.shape) for x in (t["o"], t["o_next"]))
        return Transitions(o, o_next, o_next, a.expand(m, *a.shape), mask.expand(m, batch_size))


def train(configs, data, seeds=None):
    configs = list(configs)
    return LinearLAM.train(configs, data, seeds or [0] * len(configs), device="cpu")


def untrained(config, copies: int = 1) -> LinearLAM:
    return LinearLAM([config] * copies, SPEC, list(range(copies)), "cpu")


def augmentation_generators(copies: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(m) for m in range(copies)]


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
    configs = [LinearConfig(latent_dim=d_z, kappa=kappa, **FAST) for kappa in (0.0, 0.5)]
    lam = train(configs, FormulaData(2, seed=1))
    return d_z, lam


def test_trainer_reaches_the_pca_optimum(trained):
    d_z, lam = trained
    t = transitions(100_000, torch.Generator().manual_seed(2))
    loss = lam.module.reconstruction_loss(t["o"], t["o_next"]).double()
    minimum = analytic_optimum_from_moment(population_moment(), d_z).min_loss
    # Both models, with and without augmentation, within 1% of the analytic minimum.
    assert torch.all((loss / minimum - 1).abs() < 0.01), (loss, minimum)
    # optimality_gap compares with the minimum on the same transitions.
    gap = optimality_gap(lam, t["o"], t["o_next"])
    torch.testing.assert_close(gap.loss, loss)
    assert torch.all(gap.relative.abs() < 0.02)
    for history in lam.history:  # one point per log window, every one finite
        assert len(history["loss"]) == FAST["steps"] // 100 and np.isfinite(history["loss"]).all()


def test_augmentation_drives_A_to_identity_and_C_to_minus_D(trained):
    _, lam = trained
    model = lam.module
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
    model = untrained(LinearConfig(latent_dim=D_A, kappa=1.0)).module
    t = transitions(4096, torch.Generator().manual_seed(3))
    opt = analytic_optimum(t["o_next"] - t["o"], D_A)
    with torch.no_grad():
        for name in "ABCD":
            getattr(model, name).copy_(getattr(opt, name)[None].float())
    batch = Transitions(
        t["o"][None],
        t["o_next"][None],
        t["o_next"][None],
        t["a"][None],
        torch.ones(1, 4096, dtype=torch.bool),
    )
    augmented = model.loss(batch, augmentation_generators(1))
    clean = model.reconstruction_loss(t["o"], t["o_next"])
    torch.testing.assert_close(augmented.reconstruction, clean, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Action head
# --------------------------------------------------------------------------------------------


def test_action_head_recovers_the_action_under_strong_other_agents():
    """σ_exo = 2 > 1: Y b dominates Cov(o'−o), so with d_z = d_a < d_a + d_b the latent fits the
    other agents first. 10% labels and λ_a = 10 in the head make it capture the action."""
    noise = dict(sigma_iid=0.0, sigma_exo=2.0)
    configs = [  # copy 0 without the head, copy 1 with it
        LinearConfig(latent_dim=D_A, action_head=head, action_weight=10.0, **FAST)
        for head in (False, True)
    ]
    lam = train(configs, FormulaData(2, seed=4, label_fraction=0.1, **noise))
    train_set = transitions(5000, torch.Generator().manual_seed(5), **noise)
    test_set = transitions(5000, torch.Generator().manual_seed(6), **noise)
    z_train = lam.latents(train_set["o"], train_set["o_next"])
    z_test = lam.latents(test_set["o"], test_set["o_next"])

    def targets(t):
        return {k: t[k] for k in ("a", "q", "eps", "o")}

    without, with_head = (
        linear_probe_report(z_train[m], z_test[m], targets(train_set), targets(test_set))
        for m in (0, 1)
    )
    assert without["nmse_a"] > 0.9 and without["nmse_eps"] < 0.5, without
    assert with_head["nmse_a"] < 0.05 and with_head["nmse_eps"] > 0.9, with_head
    assert with_head["llo"] > 1.9


def test_unlabelled_nan_actions_never_reach_the_loss():
    model = untrained(LinearConfig(latent_dim=2, action_head=True, kappa=0.1)).module
    t = transitions(64, torch.Generator().manual_seed(7))
    mask = torch.arange(64) % 3 == 0
    a_nan = torch.where(mask[:, None], t["a"], torch.nan)
    a_other = torch.where(mask[:, None], t["a"], 123.0)

    def loss_and_grads(a, label_mask):
        model.zero_grad()
        batch = Transitions(
            t["o"][None], t["o_next"][None], t["o_next"][None], a[None], label_mask[None]
        )
        terms = model.loss(batch, augmentation_generators(1))
        terms.total.sum().backward()
        return terms, [p.grad.clone() for p in model.parameters()]

    terms, grads = loss_and_grads(a_nan, mask)
    assert all(torch.isfinite(x).all() for x in (*terms, *grads))
    # What an unlabelled entry holds has no influence at all.
    terms_other, grads_other = loss_and_grads(a_other, mask)
    torch.testing.assert_close(terms.total, terms_other.total)
    for g, g_other in zip(grads, grads_other, strict=True):
        torch.testing.assert_close(g, g_other)

    # A batch with no label at all: the action term is 0, and still no NaN anywhere.
    terms, grads = loss_and_grads(torch.full_like(t["a"], torch.nan), torch.zeros(64, dtype=bool))
    assert terms.action.eq(0).all()
    assert all(torch.isfinite(x).all() for x in (*terms, *grads))


def test_the_head_refuses_data_without_labels():
    config = LinearConfig(latent_dim=2, action_head=True, steps=20, batch_size=BATCH)
    with pytest.raises(ValueError, match="the action head needs labelled transitions"):
        train([config], FormulaData(1, seed=8, label_fraction=0.0))


def test_loss_matches_the_formulas_per_model():
    """Per-copy data (M, N, d_o), κ = 0: the batched loss is each copy's formula."""
    M, N, d_z, lam = 3, 50, 2, 0.7
    model = untrained(LinearConfig(latent_dim=d_z, action_head=True, action_weight=lam), M).module
    gen = torch.Generator().manual_seed(9)
    o, o_next = torch.randn(M, N, D_O, generator=gen), torch.randn(M, N, D_O, generator=gen)
    a = torch.randn(M, N, D_A, generator=gen)
    mask = torch.rand(M, N, generator=gen) < 0.5
    batch = Transitions(o, o_next, o_next, torch.where(mask[..., None], a, torch.nan), mask)
    terms = model.loss(batch, augmentation_generators(M))
    with torch.no_grad():
        for m in range(M):
            A, B, C, D, E = (getattr(model, k)[m] for k in "ABCDE")
            z = o[m] @ C.T + o_next[m] @ D.T
            reconstruction = (o[m] @ A.T + z @ B.T - o_next[m]).square().sum(-1).mean()
            action = (z @ E.T - a[m])[mask[m]].square().sum(-1).mean()
            torch.testing.assert_close(terms.reconstruction[m], reconstruction)
            torch.testing.assert_close(terms.action[m], action)
            torch.testing.assert_close(terms.total[m], reconstruction + lam * action)


def test_copies_start_from_their_own_seeds():
    """Copy m's initial weights depend only on its seed, not on the copies beside it."""
    config = LinearConfig(latent_dim=3)
    alone = LinearLAM([config], SPEC, [7], "cpu").module
    together = LinearLAM([config] * 3, SPEC, [1, 7, 2], "cpu").module
    for name in "ABCD":
        torch.testing.assert_close(getattr(together, name)[1], getattr(alone, name)[0])


def test_surrogate_latent_is_the_latent_when_A_is_identity():
    lam = untrained(LinearConfig(latent_dim=3), copies=2)
    with torch.no_grad():
        lam.module.A.copy_(torch.eye(D_O))
    t = transitions(32, torch.Generator().manual_seed(10))
    z = lam.latents(t["o"], t["o_next"])
    assert z.shape == (2, 32, 3)
    # z̃ = B⁺(A o + B z − o) = B⁺ B z = z for a full-rank B.
    np.testing.assert_allclose(lam.surrogate(t["o"], t["o_next"]), z, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(latent_dim=0), r"latent_dim must be >= 1, got 0"),
        (dict(kappa=-0.1), r"kappa must be >= 0.0, got -0.1"),
        (dict(kappa=math.nan), r"kappa must be a finite number, got nan"),
        (dict(kappa=math.inf), r"kappa must be a finite number, got inf"),
        (dict(action_weight=-1.0), r"action_weight must be >= 0.0, got -1.0"),
        (dict(lr=0.0), r"lr must be > 0, got 0.0"),
        (dict(batch_size=0), r"batch_size must be >= 1, got 0"),
        (dict(latent_dim=2.5), r"latent_dim must be an integer, got 2.5"),
        (dict(lr_schedule="linear"), r"unknown lr_schedule 'linear'; allowed: 'constant'"),
    ],
)
def test_bad_config_names_the_value(change, message):
    with pytest.raises(ValueError, match=message):
        LinearConfig(**change)


def test_a_latent_larger_than_the_observation_is_refused():
    with pytest.raises(ValueError, match=r"latent_dim must be in \[1, 16\], got 17"):
        untrained(LinearConfig(latent_dim=17))


def test_copies_that_differ_beyond_their_per_copy_fields_are_refused():
    configs = [LinearConfig(latent_dim=2), LinearConfig(latent_dim=3)]
    with pytest.raises(ValueError, match="may differ only in kappa, action_weight, action_head"):
        LinearLAM(configs, SPEC, [0, 1], "cpu")


def test_a_source_of_the_wrong_shape_is_refused():
    class Wrong(FormulaData):
        def sample(self, batch_size, **_):  # o and o' in 8 dimensions instead of d_o = 16
            o = torch.zeros(1, batch_size, 8)
            return Transitions(
                o, o, o, torch.zeros(1, batch_size, D_A), torch.ones(1, batch_size, dtype=bool)
            )

    config = LinearConfig(latent_dim=2, steps=5, batch_size=BATCH)
    with pytest.raises(ValueError, match=r"obs of shape \(1, 128, 8\); expected \(1, 128, 16\)"):
        train([config], Wrong(1, seed=0))
