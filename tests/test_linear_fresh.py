"""The published protocol's machinery: fresh batches from the formulas, Adam probes on a
frozen LAM, the loss convention, and copies that do not depend on the copies beside them.

Small spaces (d_o = 16, d_a = 4) so every test takes seconds on two cores.
"""

import math

import numpy as np
import pytest
import torch

from lam_envs.envs.linear import LinearLAMConfig, effect_matrices
from lam_models.lams.linear import LinearConfig, LinearLAM, published_action_weight
from lam_models.lams.linear_fresh import (
    FreshBatches,
    FreshLaw,
    ProbePlan,
    adam_probes,
    train_and_probe,
)
from lam_models.split import Transitions

D_O, D_A, D_B = 16, 4, 4
PUBLISHED = dict(lr=1e-3, lr_schedule="constant", init="uniform", init_scale=1.0)


def law(**kw) -> FreshLaw:
    return FreshLaw(**{"d_o": D_O, "d_a": D_A, "d_b": D_B, **kw})


def matrices(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = effect_matrices(LinearLAMConfig(d_o=D_O, d_a=D_A, d_b=D_B, structure_seed=seed))
    return torch.from_numpy(x).float(), torch.from_numpy(y).float()


# --------------------------------------------------------------------------------------------
# Fresh batches
# --------------------------------------------------------------------------------------------


def test_batches_follow_the_formulas_of_each_noise_law():
    laws = [
        law(),
        law(noise="gaussian", sigma=0.5),
        law(noise="uniform", sigma=0.8),
        law(noise="other_agents", sigma=2.0),
        law(chi=0.5),
    ]
    d = FreshBatches(laws, [3] * 5).draw(20_000)
    X, Y = matrices(3)
    o, nxt, a, noise = d["obs"], d["next_obs"], d["action"], d["noise"]
    change = nxt - o - a @ X.T
    # No noise, i.i.d. Gaussian ε, uniform ε, other agents σ·Y b (the probe's target is b).
    assert change[0].abs().max() < 1e-5
    torch.testing.assert_close(change[1], noise[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(change[2], noise[2], atol=1e-5, rtol=0)
    torch.testing.assert_close(change[3], 2.0 * noise[3, :, :D_B] @ Y.T, atol=1e-5, rtol=0)
    assert noise[1].std() == pytest.approx(0.5, rel=0.02) and abs(noise[1].mean()) < 0.01
    # Uniform [0, σ): the released code's law, mean σ/2 (not 0), variance σ²/12.
    assert 0 <= noise[2].min() and noise[2].max() < 0.8
    assert noise[2].mean() == pytest.approx(0.4, rel=0.01)
    assert noise[2].var() == pytest.approx(0.64 / 12, rel=0.02)
    assert noise[3, :, :D_B].std() == pytest.approx(1.0, rel=0.02)
    assert noise[3, :, D_B:].abs().max() == 0  # padding beyond the copy's width
    # The χ policy: a = (1 − χ) s + χ Π o, Π with orthonormal rows (the published F6a):
    # coordinate i has variance (1 − χ)² + χ² Σ_j Π_ij² = (1 − χ)² + χ².
    assert a[0].var(0).mean() == pytest.approx(1.0, rel=0.03)
    torch.testing.assert_close(a[4].var(0), torch.full((D_A,), 0.5), rtol=0.05, atol=0)
    s_part = (a[4] - 0.5 * a[0]) / 0.5  # copies of one seed share their draws of o and s
    residual = torch.linalg.lstsq(o[4], s_part).residuals.sum()
    assert residual < 1e-3 * s_part.square().sum()  # s_part is exactly linear in o: Π o


def test_labels_are_drawn_per_transition_in_every_batch():
    data = FreshBatches([law(), law()], [0, 1], label_fractions=[0.0, 0.01])
    batches = [data.sample(128) for _ in range(200)]
    masks = torch.stack([b.label_mask for b in batches])  # (200, 2, 128)
    assert not masks[:, 0].any()
    assert masks[:, 1].float().mean() == pytest.approx(0.01, abs=0.002)
    assert (masks[:, 1].sum(-1) == 0).any()  # at 1%, about a quarter of the batches hold none
    for b in batches[:5]:
        assert torch.isnan(b.actions[~b.label_mask]).all()
        assert torch.isfinite(b.actions[b.label_mask]).all()
    # Every batch is new: no two batches repeat.
    assert not torch.equal(batches[0].obs, batches[1].obs)
    assert not torch.equal(batches[15].obs, batches[16].obs)  # across a refill of the buffer


def test_a_copys_data_depend_only_on_its_seed_and_law():
    alone = FreshBatches([law(noise="gaussian", sigma=0.3)], [7]).draw(64)
    together = FreshBatches(
        [law(d_a=2), law(noise="gaussian", sigma=0.3), law(chi=0.2)], [1, 7, 7]
    ).draw(64)
    for key in ("obs", "next_obs", "noise"):
        torch.testing.assert_close(together[key][1], alone[key][0], rtol=0, atol=0)
    other_seed = FreshBatches([law(noise="gaussian", sigma=0.3)], [8]).draw(64)
    assert not torch.equal(other_seed["obs"][0], alone["obs"][0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(noise="pink"), r"unknown noise 'pink'"),
        (dict(sigma=-1.0), r"sigma must be >= 0.0, got -1.0"),
        (dict(sigma=math.inf), r"sigma must be a finite number, got inf"),
        (dict(chi=1.5), r"chi must be in \[0.0, 1.0\], got 1.5"),
        (dict(d_a=16), r"d_a must be in \[1, 15\], got 16"),
    ],
)
def test_bad_laws_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        law(**kwargs)


# --------------------------------------------------------------------------------------------
# The loss convention
# --------------------------------------------------------------------------------------------


def test_published_weight_reproduces_the_published_loss_up_to_its_scale():
    """Published: MSE averaged over dimensions, recon/d_o + w·action/d_a. Here: sums over
    dimensions, so λ_a = w·d_o/d_a gives d_o times the published loss, exactly."""
    w = 1.0
    lam_a = published_action_weight(D_O, D_A, w)
    assert lam_a == D_O / D_A
    config = LinearConfig(latent_dim=3, action_head=True, head_bias=True, action_weight=lam_a)
    net = LinearLAM([config], FreshBatches([law()], [0]).spec, [0], "cpu").module
    batch = FreshBatches([law(noise="gaussian", sigma=0.2)], [0], [0.3]).sample(128)
    terms = net.loss(batch, [torch.Generator()])
    with torch.no_grad():
        o, nxt, mask = batch.obs[0], batch.next_obs[0], batch.label_mask[0]
        z = o @ net.C[0].T + nxt @ net.D[0].T
        recon = torch.nn.functional.mse_loss(o @ net.A[0].T + z @ net.B[0].T, nxt)
        a_hat = z @ net.E[0].T + net.e[0]
        action = torch.nn.functional.mse_loss(a_hat[mask], batch.actions[0][mask])
    torch.testing.assert_close(terms.total[0] / D_O, recon + w * action)


def test_adam_does_not_see_the_convention():
    """The same Adam steps under the loss and the loss / d_o (its ε aside): so a run with
    the package's sums and λ_a = w·d_o/d_a is the published run with weight w."""
    config = LinearConfig(latent_dim=3, action_head=True, action_weight=4.0, **PUBLISHED)
    spec = FreshBatches([law()], [0]).spec
    nets = [LinearLAM([config], spec, [0], "cpu").module for _ in range(2)]
    data = [FreshBatches([law(noise="gaussian", sigma=0.3)], [0], [0.2]) for _ in range(2)]
    for net, source, scale in zip(nets, data, (1.0, 1.0 / D_O), strict=True):
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(50):
            loss = net.loss(source.sample(128), [torch.Generator()]).total.sum() * scale
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for name in "ABCDE":
        torch.testing.assert_close(getattr(nets[0], name), getattr(nets[1], name), atol=2e-5,
                                   rtol=0)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Model options of the published runs
# --------------------------------------------------------------------------------------------


def test_uniform_init_is_torch_linear_default():
    config = LinearConfig(latent_dim=3, action_head=True, head_bias=True, init="uniform",
                          init_scale=1.0)  # fmt: skip
    net = LinearLAM([config], FreshBatches([law()], [0]).spec, [5], "cpu").module
    for p, fan_in in ((net.A, D_O), (net.B, 3), (net.C, D_O), (net.E, 3), (net.e, 3)):
        assert p.abs().max() <= 1 / math.sqrt(fan_in)  # U(−1/√fan_in, 1/√fan_in)
    assert net.A.abs().max() > 0.95 / math.sqrt(D_O)  # 256 draws reach the bound
    assert net.A.std().item() == pytest.approx(1 / math.sqrt(3 * D_O), rel=0.1)


def test_head_bias_is_per_copy():
    configs = [LinearConfig(latent_dim=2, action_head=True, head_bias=b) for b in (True, False)]
    net = LinearLAM(configs, FreshBatches([law()], [0]).spec, [0, 1], "cpu").module
    z = torch.zeros(2, 5, 2)
    a = net.head(z)
    torch.testing.assert_close(a[0], net.e[0].expand(5, D_A))  # z = 0: the bias alone
    assert a[1].abs().max() == 0  # no bias: 0 at z = 0


def test_change_latent_is_the_prediction_minus_o():
    lam = LinearLAM([LinearConfig(latent_dim=3)], FreshBatches([law()], [0]).spec, [0], "cpu")
    d = FreshBatches([law()], [0]).draw(32)
    net = lam.module
    with torch.no_grad():
        change = net.latent("change", d["obs"], d["next_obs"])
        z = net.latent("true", d["obs"], d["next_obs"])
        expected = net.predict(d["obs"], z) - d["obs"]
    torch.testing.assert_close(change, expected)
    assert change.shape == (1, 32, D_O) and z.shape == (1, 32, 3)
    with pytest.raises(ValueError, match="unknown latent 'raw'"):
        net.latent("raw", d["obs"], d["next_obs"])


# --------------------------------------------------------------------------------------------
# Adam probes, and training groups
# --------------------------------------------------------------------------------------------


def _optimal(d_z: int, seed: int = 0) -> LinearLAM:
    """The PCA optimum without noise: A = I, B = X, D = Xᵀ, C = −Xᵀ (z = a when d_z = d_a)."""
    lam = LinearLAM([LinearConfig(latent_dim=d_z)], FreshBatches([law()], [0]).spec, [seed], "cpu")
    X, _ = matrices(seed)
    with torch.no_grad():
        lam.module.A.copy_(torch.eye(D_O))
        lam.module.B.copy_(X[:, :d_z])
        lam.module.D.copy_(X[:, :d_z].T)
        lam.module.C.copy_(-X[:, :d_z].T)
    return lam


@pytest.mark.parametrize("latent", ["change", "true"])
def test_adam_probes_read_the_action_from_an_optimal_lam(latent):
    laws, fast = [law()], dict(steps=600, lr=1e-2, test_transitions=2000)  # converged probes
    full = adam_probes(_optimal(D_A), laws, laws, latent, **fast)[0]
    half = adam_probes(_optimal(2), laws, laws, latent, **fast)[0]
    assert full["nmse_a"] < 0.01  # z = a
    assert half["nmse_a"] == pytest.approx(0.5, abs=0.03)  # half the action's directions
    assert full["nmse_o"] > 0.97  # z holds nothing of o
    assert full["nmse_noise"] == 1.0  # no noise: holding none of it is perfect


def test_probes_fitted_on_one_law_and_measured_on_another():
    """F6a's protocol: fitted on χ-policy data, measured on random-policy data."""
    lam = _optimal(D_A)
    fit, fast = [law(chi=0.3)], dict(steps=600, lr=1e-2, test_transitions=2000)
    same = adam_probes(lam, fit, fit, "change", **fast)[0]
    moved = adam_probes(lam, fit, [fit[0].random_policy()], "change", **fast)[0]
    # The optimal LAM's change is X a under any policy, so the fitted map a = Xᵀ(ô′ − o)
    # transfers; what the χ-policy adds is the probe's imperfect fit of a larger target.
    assert same["nmse_a"] < 0.01 and moved["nmse_a"] < 0.05
    with pytest.raises(ValueError, match="same target widths"):
        adam_probes(lam, fit, [law(noise="gaussian", sigma=1.0)], "change", steps=1)


def test_copies_do_not_depend_on_the_copies_beside_them():
    """A copy's training, augmentation, labels and probes come from its seed and settings:
    alone or in a group with others, the same numbers."""
    base = dict(latent_dim=D_A, steps=150, log_every=50, **PUBLISHED)
    mine = (LinearConfig(kappa=0.1, action_head=True, head_bias=True, action_weight=4.0, **base),
            law(noise="other_agents", sigma=2.0), 0.1)  # fmt: skip
    others = [(LinearConfig(**base), law(chi=0.4), 0.0),
              (LinearConfig(kappa=0.5, **base), law(noise="uniform", sigma=0.5), 0.0)]  # fmt: skip
    plan = ProbePlan("true", steps=100, test_transitions=500)

    def run(items, seeds):
        return train_and_probe([c for c, _, _ in items], [x for _, x, _ in items], seeds,
                               [f for _, _, f in items], [plan] * len(items))  # fmt: skip

    alone = run([mine], [3])[0]
    together = run([others[0], mine, others[1]], [3, 3, 4])[1]
    for key in ("nmse_a", "nmse_o", "nmse_noise", "recon_loss"):
        assert together[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key


def test_training_on_fresh_batches_reaches_the_pca_optimum():
    """The published optimiser (Adam 1e-3, constant) on fresh batches: within 1% of the
    analytic minimum of fresh transitions (σ_exo = 0.5, d_z = d_a: minimum d_b σ²)."""
    config = LinearConfig(latent_dim=D_A, steps=4000, log_every=1000, **PUBLISHED)
    laws = [law(noise="other_agents", sigma=0.5)]
    result = train_and_probe([config], laws, [0], [0.0], [ProbePlan(steps=1)],
                             recon_transitions=20_000)[0]  # fmt: skip
    assert result["analytic_loss"] == pytest.approx(D_B * 0.25, rel=0.05)
    assert result["recon_loss"] / result["analytic_loss"] - 1 < 0.01


def test_fresh_batches_feed_the_trainer_as_any_data():
    data = FreshBatches([law(), law()], [0, 1], [0.5, 0.5])
    batch = data.sample(32)
    assert isinstance(batch, Transitions) and batch.obs.shape == (2, 32, D_O)
    assert data.has_labels.tolist() == [True, True]
    lam = LinearLAM.train(LinearConfig(latent_dim=2, steps=20, action_head=True), data, [0, 1],
                          device="cpu")  # fmt: skip
    assert np.isfinite(lam.history[0]["loss"]).all()


def test_the_published_policy_matrix_has_orthonormal_rows_and_keeps_a_at_unit_variance():
    from lam_models.lams.linear_fresh import policy_matrix

    pi = policy_matrix(128, 8, "orthonormal", seed=3)
    assert pi.shape == (8, 128)
    np.testing.assert_allclose(pi @ pi.T, np.eye(8), atol=1e-5)
    for chi in (0.0, 0.4, 1.0):  # a = (1 − χ) s + χ Π o: variance (1 − χ)² + χ², about 1
        data = FreshBatches([FreshLaw(chi=chi)], [3], label_fractions=[1.0])
        variance = float(data.sample(8192).actions.var(1).mean())
        assert variance == pytest.approx((1 - chi) ** 2 + chi**2, rel=0.05)
    # The Gaussian variant: a's variance is d_o at χ = 1.
    data = FreshBatches([FreshLaw(chi=1.0, projection="gaussian")], [3], label_fractions=[1.0])
    assert float(data.sample(8192).actions.var(1).mean()) == pytest.approx(128, rel=0.1)
    with pytest.raises(ValueError, match="projection"):
        FreshLaw(projection="qr")
