"""The report card's suite v2: the unconverged mark (its rule, and where the card shows it)
and the linear settings' own data, on which the linear LAM converges within the card's
budget."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from lam_models import benchmark
from lam_models.evaluation.card import (
    LEVELLED_BELOW,
    STILL_FALLING,
    card_markdown,
    read_card,
    unconverged,
)
from lam_models.evaluation.scoring import evaluate
from lam_models.evaluation.suite import builtin_method, standard_settings

STEPS = np.arange(1, 31)


def test_a_falling_loss_is_unconverged_and_a_levelled_one_is_not():
    falling = 1.0 / STEPS  # the last tenth's mean 9% below the tenth before's
    levelled = 0.3 + 0.7 * np.exp(-STEPS / 3)  # within 0.1% of its floor at the end
    assert unconverged(falling) and not unconverged(levelled)
    # The threshold: a fall of just over 2% between the two last tenths marks, just under
    # does not (three points per tenth of a 30-point log).
    for fall, marked in ((1.01 * STILL_FALLING, True), (0.99 * STILL_FALLING, False)):
        log = np.concatenate([np.full(27, 1.0), np.full(3, 1.0 - fall)])
        assert unconverged(log) is marked
    # A loss that rises at the end, a negative loss still falling (an ELBO, a contrastive
    # loss), a log too short to compare, or none (a user's method) are judged so.
    assert not unconverged(STEPS / 30.0)
    assert unconverged(-np.log(STEPS))
    assert not unconverged([1.0]) and not unconverged([]) and not unconverged(None)
    assert unconverged([2.0, 1.0])  # 2 points: a tenth is one point
    for bad in ("falling", [[1.0, 0.5]], [1.0, "x"]):
        with pytest.raises(ValueError, match="a loss history is a sequence of numbers"):
            unconverged(bad)


def test_a_loss_that_fell_to_its_floor_of_zero_is_levelled():
    # A noiseless process's loss falls geometrically towards its optimum, 0, as long as it
    # trains: still falling by more than 2% per tenth, but 10⁻⁴ below where it started.
    geometric = 30.0 * 0.5**STEPS
    assert geometric[-3:].mean() < LEVELLED_BELOW * geometric[:3].mean()
    assert not unconverged(geometric)
    assert unconverged(30.0 * 0.8**STEPS)  # the same fall, stopped at 10⁻³ of its start


class Change:
    """A user's latent function, z = o' − o, that offers a loss history."""

    def __init__(self, loss):
        self.loss_history = list(loss)

    def __call__(self, o, o_next):
        return (o_next - o).flatten(1)


def still_falling(data, seed):
    """A user's method whose training loss was still falling when it stopped."""
    return Change(1.0 / STEPS)


def levelled(data, seed):
    """A user's method whose training loss had levelled off."""
    return Change(np.ones(30))


def test_the_card_marks_an_unconverged_cell_instead_of_a_finding(tmp_path):
    (setting,) = standard_settings("linear/agents-strong")
    suite = benchmark.Suite((setting,), 2400, 3, seeds=2)
    rows = benchmark.run_benchmark([still_falling, levelled], suite, out=tmp_path, workers=1)
    assert [(r["method"], r["unconverged"]) for r in rows] == [
        ("still_falling", True),
        ("still_falling", True),
        ("levelled", False),
        ("levelled", False),
    ]
    with (tmp_path / "card.csv").open() as f:
        assert [r["unconverged"] for r in csv.DictReader(f)] == ["True", "True", "False", "False"]
    markdown = (tmp_path / "card.md").read_text()
    lines = {line.split(" | ")[0]: line for line in markdown.splitlines() if line.startswith("|")}
    assert lines["| still_falling"].endswith("| **unconverged** (2/2 seeds) |")
    assert lines["| levelled"].endswith(" |  |")  # no mark
    assert "unconverged: the method's training loss was still falling" in markdown
    # The mark survives reading the card back (a card of suite v1 has no such column).
    again = card_markdown(read_card(tmp_path / "card.csv"), suite)
    assert again + "\n" == markdown
    rows_v1 = [{k: v for k, v in r.items() if k != "unconverged"} for r in rows]
    assert "**unconverged**" not in card_markdown(rows_v1, suite)
    assert (tmp_path / "card.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def no_noise(tmp_path_factory):
    """The card's linear/no-noise data (short episodes), 2,000 transitions of it."""
    (setting,) = standard_settings("linear/no-noise")
    root = tmp_path_factory.mktemp("card-linear")
    return setting, benchmark.ensure_dataset(setting.recipe, root, transitions=2000)


def test_the_linear_lam_holds_the_action_on_the_cards_no_noise_data(no_noise):
    # F3a (a linear LAM with d_z = d_a holds all of the action without noise), at the
    # card's budget and CPU sizes: on the short episodes it converges (seconds).
    setting, path = no_noise
    split = benchmark.setting_split(setting, path, seed=0)
    latent_fn = builtin_method("linear", 1500)(split.training_view(), 0)
    assert evaluate(latent_fn, split)["nmse_action"] <= 0.05
    assert len(latent_fn.loss_history) == 15 and not unconverged(latent_fn.loss_history)
