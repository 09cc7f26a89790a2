"""The pipeline's policies with a CNN encoder (lam_models.pipeline.bc, ``image_shape``): each
copy trains as it would alone, they save, load and select like the MLPs, the decoder stays an
MLP, the pipeline takes ``--policy-encoder cnn`` on images only, and the MLP is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SNAKING, collect_into

from lam_models.pipeline import main, run_pipeline
from lam_models.pipeline.bc import (
    Policy,
    PolicyFit,
    bc_policies,
    fit_decoder,
    fit_policy,
    load_policy,
    save_policy,
)

IMAGE = (1, 8, 8)


def _images(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n flattened 1×8×8 images with one bright pixel; the label is the pixel's quadrant."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 64), np.float32)
    where = rng.integers(64, size=n)
    x[np.arange(n), where] = 1.0
    return x, (where // 8 >= 4) * 2 + (where % 8 >= 4)


def _fit(seeds, steps=20, **kwargs) -> Policy:
    x, y = _images()
    support = np.ones((len(seeds), len(x)), bool)
    return fit_policy(
        x, y, support, "classification", steps=steps, seeds=seeds, width=16, d_out=4,
        image_shape=IMAGE, **kwargs,
    )  # fmt: skip


def test_a_cnn_copy_trains_as_it_would_alone():
    x = torch.from_numpy(_images(20, seed=1)[0])
    pair, alone = _fit([4, 9]), _fit([9])
    assert pair.encoder is not None and pair.spec()["image_shape"] == list(IMAGE)
    np.testing.assert_allclose(
        pair(x[None].expand(2, -1, -1))[1], alone(x[None])[0], rtol=1e-4, atol=1e-5
    )
    # The seed, not the copy's place, draws the initial weights (convolutions and head).
    first = _fit([4, 9], steps=0)
    for name, value in first.state_dict().items():
        if name.startswith(("encoder.", "net.")):
            assert not torch.equal(value[0], value[1]), name


def test_a_cnn_policy_learns_saves_loads_and_selects(tmp_path):
    policy = _fit([0, 1], steps=300)
    x, y = _images(200, seed=2)
    x = torch.from_numpy(x)[None].expand(2, -1, -1)
    assert (policy.act(x).numpy() == y).mean() > 0.9
    save_policy(tmp_path / "p.pt", policy)
    loaded = load_policy(tmp_path / "p.pt")
    assert loaded.spec() == policy.spec()
    assert torch.equal(loaded(x), policy(x))
    picked = policy.select([1, 1, 0])
    assert picked.spec() == {**policy.spec(), "num_models": 3}
    out, again = policy(x), picked(torch.cat([x, x[:1]]))
    for i, j in enumerate([1, 1, 0]):
        assert torch.equal(again[i], out[j])
    # The inputs are standardised by one scale per copy: the same over all pixels.
    assert torch.equal(policy.in_std, policy.in_std[..., :1].expand_as(policy.in_std))


def test_an_image_shape_must_hold_the_inputs():
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\) with C·H·W = 64"):
        Policy(1, 64, 4, 16, "classification", image_shape=(1, 8, 9))
    with pytest.raises(ValueError, match="image_shape must be"):
        Policy(1, 64, 4, 16, "classification", image_shape=(8, 8))


def test_the_decoder_stays_an_mlp_under_cnn_policies():
    x, y = _images()
    z = np.random.default_rng(0).normal(size=(1, len(x), 3)).astype(np.float32)
    labelled = np.zeros((1, len(x)), bool)
    labelled[0, ::4] = True
    fit = PolicyFit(True, 4, 5, [0], 16, image_shape=IMAGE)
    policies = bc_policies(x[None], z, y[None], y[None], labelled, fit)
    assert all(p.encoder is not None for p in policies.values())
    decoder = fit_decoder(z, y[None], labelled, fit)
    assert decoder.encoder is None and decoder.d_in == 3


def test_the_mlp_policies_are_as_they_were():
    """The default (no image_shape) keeps the MLP's numbers: sums of the weights after a tiny
    fit, as the package computed them before the CNN encoder existed."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(3, size=40)
    yr = rng.normal(size=(40, 2)).astype(np.float32)
    support = np.ones((2, 40), bool)
    support[1, ::3] = False
    settings = {"steps": 25, "seeds": [3, 8], "width": 16}
    fitted = {
        "c": fit_policy(x, y, support, "classification", d_out=3, **settings),
        "r": fit_policy(x, yr, support, "regression", **settings),
    }
    before = {
        "c.net.hidden.weight": -0.7244529777090065,
        "c.net.hidden.bias": 0.2865377441048622,
        "c.net.out.weight": -0.6765709114843048,
        "c.net.out.bias": -0.30120717734098434,
        "r.in_std": 11.973976135253906,
        "r.out_mean": -0.6383245661854744,
        "r.out_std": 3.559115767478943,
        "r.net.hidden.weight": 0.17906345857772976,
        "r.net.hidden.bias": 0.23662234842777252,
        "r.net.out.weight": 0.38007848549750634,
        "r.net.out.bias": -0.3052476793527603,
    }
    for key, value in before.items():
        kind, name = key.split(".", 1)
        got = float(fitted[kind].state_dict()[name].double().sum())
        assert got == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert set(fitted["c"].state_dict()) == {
        "in_mean", "in_std", "out_mean", "out_std",
        "net.hidden.weight", "net.hidden.bias", "net.out.weight", "net.out.bias",
    }  # fmt: skip
    assert "image_shape" not in fitted["c"].spec()


def test_the_pipeline_clones_with_cnns_on_images_only(tmp_path, capsys):
    grid = dict(SNAKING, env_kwargs={"noise_intensity": 0.0}, episodes=12, episode_length=30)
    grid_path = collect_into(tmp_path / "minari", **grid, label_fraction=0.2, seed=0)
    linear = dict(env="LinearLAM-v0", env_kwargs={"d_o": 8, "d_a": 2, "d_b": 2}, episodes=6)
    linear.update(episode_length=20, label_fraction=0.2)
    linear_path = collect_into(tmp_path / "minari", **linear, seed=0)
    fast = {"lam_options": {"steps": 30}, "policy_steps": 30, "rollout_episodes": 2}
    out = tmp_path / "cnn"
    summary = run_pipeline(grid_path, "linear", out, policy_encoder="cnn", **fast)
    assert np.isfinite(summary["composed_return"])
    for name in ("latent_policy", "labelled_bc", "full_bc"):
        assert load_policy(out / "bc" / f"{name}.pt").spec()["image_shape"] == [1, 4, 4]
    assert load_policy(out / "decoder" / "decoder.pt").encoder is None
    args = ["--dataset", str(linear_path), "--out", str(tmp_path / "lin"), "--lam", "linear"]
    assert main([*args, "--policy-encoder", "cnn", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--policy-encoder cnn needs image observations (C, H, W)" in err
    assert err.count("\n") == 1 and not (tmp_path / "lin" / "lam").exists()
