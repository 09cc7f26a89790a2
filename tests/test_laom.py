"""The LAOM-style LAM (lam_models.laom, lam_models.train_laom): its EMA target, its look-ahead,
batched training, supervision by the linear head, and the ``train laom`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lam_envs.collect import CollectConfig, collect
from lam_models.laom import LAOMLAM, LAOMConfig, far_observations, latents, train_laom_lams
from lam_models.train import main as train_main
from lam_models.train_laom import make_samplers

TINY = LAOMConfig(steps=5, batch_size=16, label_batch_size=8, log_every=1)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")

    def grid(**kw):
        config = CollectConfig(
            env_kwargs={"noise_intensity": 1.0, "action_leak": 0.8},
            policy="snaking", epsilon=0.3, episodes=40, episode_length=50, seed=0, **kw,
        )  # fmt: skip
        return collect(config, root=root, progress=False).path

    return {"labelled": grid(label_fraction=0.05), "unlabelled": grid(label_fraction=0.0)}


def _random_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.random((n, 1, 4, 4), dtype=np.float32)
    far = rng.random((n, 1, 4, 4), dtype=np.float32)
    targets = np.eye(5, dtype=np.float32)[rng.integers(5, size=n)]
    return obs, far, targets


def test_target_encoder_is_an_ema_of_the_online_encoder_and_gets_no_gradient(monkeypatch):
    obs, far, targets = _random_data()
    snapshots = []  # the online encoder φ after each update, when the target follows it
    update = LAOMLAM.update_target

    def recording(self):
        snapshots.append([p.detach().clone() for p in self.encoder.parameters()])
        update(self)

    monkeypatch.setattr(LAOMLAM, "update_target", recording)
    samplers = make_samplers(obs, far, targets, np.ones((1, 64), bool), 16, 8, [3])
    trained, _ = train_laom_lams(TINY, [3], *samplers)
    assert len(snapshots) == TINY.steps
    # φ̄_0 = φ_0 (same seed, same initial weights); then φ̄ ← τ φ̄ + (1 − τ) φ every update.
    expected = [p.detach() for p in LAOMLAM(TINY, [3]).encoder.parameters()]
    tau = TINY.ema_decay
    for online in snapshots:
        expected = [tau * e + (1 - tau) * p for e, p in zip(expected, online, strict=True)]
    for got, want, online in zip(
        trained.target_encoder.parameters(), expected, trained.encoder.parameters(), strict=True
    ):
        torch.testing.assert_close(got, want)
        assert not torch.allclose(got, online)  # it lags: not a copy of φ
        assert not got.requires_grad and got.grad is None
    trainable = {id(p) for p in trained.trainable_parameters()}
    assert not any(id(p) in trainable for p in trained.target_encoder.parameters())


def test_batched_copies_train_as_they_would_alone():
    obs, far, targets = _random_data()
    masks = np.ones((2, 64), bool)
    config = LAOMConfig(steps=20, batch_size=16, label_batch_size=8, action_weight=1.0)
    pair, _ = train_laom_lams(
        config, [0, 1], *make_samplers(obs, far, targets, masks, 16, 8, [0, 1])
    )
    alone, _ = train_laom_lams(
        config, [1], *make_samplers(obs, far, targets, masks[1:], 16, 8, [1])
    )
    o, o_far = torch.from_numpy(obs), torch.from_numpy(far)
    torch.testing.assert_close(latents(pair, o, o_far)[1], latents(alone, o, o_far)[0])


def test_far_observations_look_k_steps_ahead_within_the_episode():
    # Two episodes of length 4; next_obs holds o_{t+1}, numbered by (episode, time).
    next_obs = np.array([11, 12, 13, 14, 21, 22, 23, 24])
    assert far_observations(next_obs, 4, 1).tolist() == next_obs.tolist()
    assert far_observations(next_obs, 4, 2).tolist() == [12, 13, 14, 14, 22, 23, 24, 24]
    assert far_observations(next_obs, 4, 9).tolist() == [14] * 4 + [24] * 4
    with pytest.raises(
        ValueError, match=r"k \(the IDM's look-ahead\) must be an integer >= 1, got 0"
    ):
        far_observations(next_obs, 4, 0)


def _train(capsys, *args):
    code = train_main(["laom", *args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_labels_pull_the_latent_to_the_action_under_action_leak(datasets, tmp_path, capsys):
    runs = {}
    for name, extra in (("plain", []), ("head", ["--action-head"])):
        out_dir = tmp_path / name
        code, out, err = _train(
            capsys, "--dataset", str(datasets["labelled"]), "--steps", "600", "--k", "1",
            "--out", str(out_dir), *extra,
        )  # fmt: skip
        assert code == 0, err
        assert "nmse(true action, one-hot)" in out and "controllable loss" in out
        runs[name] = json.loads((out_dir / "run.json").read_text())
        assert (out_dir / "model.pt").is_file()
    plain, head = runs["plain"]["metrics"], runs["head"]["metrics"]
    assert runs["head"]["method"] == "laom" and runs["head"]["model_config"]["k"] == 1
    # 5% labels through the linear head: the action becomes linearly readable from z.
    assert head["nmse_action"] < plain["nmse_action"] - 0.2
    assert head["head_accuracy"] > 0.8
    # No collapse of the target embedding (LayerNorm output: std near 1 when healthy).
    assert plain["embed_std"] > 0.3 and head["embed_std"] > 0.3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "0"], "k must be >= 1, got 0"),
        (["--ema-decay", "1.0"], "ema_decay must be in the open interval (0, 1), got 1.0"),
        (["--latent-dim", "0"], "latent_dim must be an integer >= 1, got 0"),
    ],
)
def test_bad_settings_fail_with_one_line(datasets, capsys, args, message):
    code, _, err = _train(capsys, "--dataset", str(datasets["labelled"]), "--steps", "1", *args)
    assert code == 2
    assert err.strip() == f"error: {message}"


def test_head_without_labels_and_unknown_method_fail_clearly(datasets, capsys):
    code, _, err = _train(capsys, "--dataset", str(datasets["unlabelled"]), "--action-head")
    assert code == 2 and "has no labelled transition in its train split" in err
    assert err.count("\n") == 1
    assert train_main(["laomm", "--dataset", "x"]) == 2
    assert "unknown method 'laomm'; allowed: linear, vq, laom" in capsys.readouterr().err
