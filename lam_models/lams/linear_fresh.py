"""Fresh transitions from the formulas, and probes trained by Adam: the protocol of the
published linear figures (docs/protocols.md, "Linear LAM").

Every batch is new (no dataset, no episodes):

    o ~ N(0, I),   a = (1 − χ)·s + χ·Π o  with s ~ N(0, I),   o' = o + X a + ε

with ε one of :data:`NOISES`: ``none``; ``gaussian`` σ·n, n ~ N(0, I_{d_o}); ``uniform`` σ·u
with u ~ U[0, 1) per dimension (the released code's F6b noise, whose mean σ/2 is not 0);
``other_agents`` σ·Y b, b ~ N(0, I_{d_b}). X and Y are the environment's own matrices
(:func:`lam_envs.envs.linear.effect_matrices` with ``structure_seed`` = the copy's seed); Π
(d_a×d_o) comes from the seed's ``POLICY_MATRIX`` stream (:func:`policy_matrix`): by default
with orthonormal rows, as the released F6a code draws it (so Π o ~ N(0, I) and a has
variance (1 − χ)² + χ² per coordinate, at most 1);
``projection="gaussian"`` is the variant with i.i.d. N(0, 1) entries (a's variance d_o χ² at
χ near 1).

- :class:`FreshLaw`: one copy's law.  :class:`FreshBatches`: the batches of M copies, with the
  ``sample`` interface :meth:`LinearLAM.fit` reads; each transition is labelled with
  probability ``label_fraction``, drawn anew in every batch (the published F6c labels).
- :func:`adam_probes`: linear probes (with bias) trained with Adam on fresh batches of a
  frozen LAM's latent, then measured on fresh transitions (nmse per target).
- :func:`reconstruction_report`: the reconstruction loss beside the PCA minimum.

Copies with the same seed and the same draw shapes (d_o, d_a, noise width) share their raw
normal draws (common random numbers: their comparison is sharper, and the draws cost once).
A copy's data depend only on its seed, its law and the stream, never on the copies beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from lam_envs.envs.linear import LinearLAMConfig, effect_matrices
from lam_envs.utils.config import check_fields, option
from lam_envs.utils.validate import check_choice, check_fraction, check_int
from lam_models.lams import fields
from lam_models.lams.base import resolve_device
from lam_models.lams.linear import LATENTS, LinearLAM, analytic_optimum
from lam_models.seeding import Stream, numpy_rng, torch_generator
from lam_models.split import DataSpec, Transitions

__all__ = [
    "NOISES",
    "PROBE_DATA",
    "PROJECTIONS",
    "FreshBatches",
    "FreshLaw",
    "ProbePlan",
    "adam_probes",
    "policy_matrix",
    "reconstruction_report",
    "train_and_probe",
]

NOISES = ("none", "gaussian", "uniform", "other_agents")
#: How Π of the χ-policy is drawn: "orthonormal" (published) or "gaussian" (a variant).
PROJECTIONS = ("orthonormal", "gaussian")
PROBE_TARGETS = ("a", "o", "noise")


@dataclass(frozen=True)
class FreshLaw:
    """One copy's data law. ``noise`` in :data:`NOISES` at scale ``sigma``; ``chi`` the
    policy's determinism (0: a ~ N(0, I)) and ``projection`` how its Π is drawn
    (:data:`PROJECTIONS`); ``d_b`` is used by ``other_agents`` only."""

    d_o: int = 128
    d_a: int = 8
    d_b: int = 8
    noise: str = option("none", "the noise (NOISES)", choices=NOISES)
    sigma: float = option(0.0, "σ, the noise's scale", low=0.0)
    chi: float = option(0.0, "χ, the policy's determinism", low=0.0, high=1.0)
    projection: str = option("orthonormal", "how Π is drawn (PROJECTIONS)", choices=PROJECTIONS)

    def __post_init__(self):
        check_int("d_o", self.d_o, low=2)
        check_int("d_a", self.d_a, low=1, high=self.d_o - 1)
        check_int("d_b", self.d_b, low=1, high=self.d_o - self.d_a)
        check_fields(self)

    @property
    def noise_width(self) -> int:
        """Width of the raw noise draw and of the noise probe's target: ε (d_o) for i.i.d.
        noise, b (d_b) for other agents, 0 without noise (or at σ = 0)."""
        if self.noise == "none" or self.sigma == 0:
            return 0
        return self.d_b if self.noise == "other_agents" else self.d_o

    def noise_free(self) -> FreshLaw:
        """The same law without noise (o' = o + X a)."""
        return replace(self, noise="none", sigma=0.0)

    def random_policy(self) -> FreshLaw:
        """The same law under the random policy a ~ N(0, I) (χ = 0)."""
        return replace(self, chi=0.0)


def policy_matrix(d_o: int, d_a: int, projection: str, seed: int) -> np.ndarray:
    """Π (d_a, d_o) float32 of the χ-policy a = (1 − χ) s + χ Π o, from ``seed``'s
    ``POLICY_MATRIX`` stream. ``orthonormal`` (the released F6a code): the transposed Q factor
    of a QR of a Gaussian d_o×d_a matrix, so Π Πᵀ = I and Π o ~ N(0, I) for o ~ N(0, I).
    ``gaussian``: i.i.d. N(0, 1) entries (Π o has variance d_o per coordinate)."""
    rng = numpy_rng(seed, Stream.POLICY_MATRIX)
    if check_choice("projection", projection, PROJECTIONS) == "gaussian":
        return rng.standard_normal((d_a, d_o)).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((d_o, d_a)))
    return np.ascontiguousarray(q.T, dtype=np.float32)


class _Key:
    """Copies sharing one seed and one draw shape (consecutive in the key order): their
    stacked matrices, their generator, and the raw draws they share."""

    def __init__(self, start: int, laws: list[FreshLaw], seed: int, stream: Stream):
        law = laws[0]
        self.rows = slice(start, start + len(laws))  # the key's copies in the key order
        self.size = len(laws)
        self.d_o, self.d_a, self.width, self.noise = law.d_o, law.d_a, law.noise_width, law.noise
        self.generator = torch_generator(seed, stream)
        configs = [LinearLAMConfig(d_o=x.d_o, d_a=x.d_a, d_b=x.d_b, structure_seed=seed)
                   for x in laws]  # fmt: skip
        matrices = [effect_matrices(c) for c in configs]
        self.Xt = torch.from_numpy(np.stack([m[0].T for m in matrices])).float()  # (k, d_a, d_o)
        self.sigma = torch.tensor([x.sigma for x in laws]).view(-1, 1, 1)
        if self.noise == "other_agents" and self.width:  # one d_b (= width) in the key
            Yt = torch.from_numpy(np.stack([m[1].T for m in matrices])).float()
            self.sYt = self.sigma * Yt  # (k, d_b, d_o): σ Yᵀ
        self.chi = torch.tensor([x.chi for x in laws]).view(-1, 1, 1)
        self.Pi = None
        if any(x.chi > 0 for x in laws):  # one Π per seed (the key shares its projection)
            self.Pi = torch.from_numpy(policy_matrix(law.d_o, law.d_a, law.projection, seed))
        self._work: dict[int, dict[str, Tensor]] = {}

    def fill(self, out: dict[str, Tensor], fractions: Tensor) -> None:
        """Draw N transitions for the key's copies into ``out``'s rows (CPU buffers
        (M, N, ·) in the key order), in place: o, s, the raw noise and the label draws
        once, then each copy's o' = o + X a + ε."""
        n, g, k = out["obs"].shape[1], self.generator, self.size
        if n not in self._work:  # reused buffers: no allocation (and page faults) per draw
            self._work = {n: {"o": torch.empty(n, self.d_o), "s": torch.empty(n, self.d_a),
                              "raw": torch.empty(n, self.width), "u": torch.empty(n)}}  # fmt: skip
        w = self._work[n]
        o = torch.randn(n, self.d_o, generator=g, out=w["o"])
        s = torch.randn(n, self.d_a, generator=g, out=w["s"])
        raw = None
        if self.width:
            draw = torch.rand if self.noise == "uniform" else torch.randn
            raw = draw(n, self.width, generator=g, out=w["raw"])
        u = torch.rand(n, generator=g, out=w["u"])
        obs, nxt = out["obs"][self.rows], out["next_obs"][self.rows]
        a = out["action"][self.rows, :, : self.d_a]
        obs.copy_(o)
        torch.mul(s, 1 - self.chi, out=a)
        if self.Pi is not None:
            a.add_(self.chi * (o @ self.Pi.mT))
        if raw is not None and self.noise != "other_agents":
            eps = out["noise"][self.rows, :, : self.width]  # the probe's target: ε itself
            torch.mul(raw, self.sigma, out=eps)
            torch.add(eps, o, out=nxt)
        else:
            nxt.copy_(o)
            if raw is not None:  # other agents: ε = σ Y b; the probe's target is b
                out["noise"][self.rows, :, : self.width] = raw
                nxt.baddbmm_(raw.expand(k, *raw.shape), self.sYt)
        nxt.baddbmm_(a, self.Xt)
        torch.lt(u, fractions[self.rows, None], out=out["label_mask"][self.rows])


class FreshBatches:
    """Fresh batches of M copies, each from its own :class:`FreshLaw` and seed.

    ``sample(batch_size)`` returns :class:`~lam_models.split.Transitions` (M, B, ·) on the
    device, actions NaN where unlabelled (each transition labelled with probability
    ``label_fractions[m]``, anew in every batch); ``draw(n)`` and ``batch(n)`` return the
    ground truth too (for probes). ``stream`` names the random stream (training, probe
    fitting, measuring).
    """

    CHUNK = 16  # batches drawn at once by batch() and sample()

    def __init__(
        self,
        laws: list[FreshLaw],
        seeds: list[int],
        label_fractions: list[float] | None = None,
        stream: Stream = Stream.BATCHES,
        device: str | torch.device = "cpu",
    ):
        if len(laws) != len(seeds) or not laws:
            raise ValueError(f"give one law per seed: {len(laws)} laws for {len(seeds)} seeds")
        if len({law.d_o for law in laws}) > 1:
            raise ValueError(f"copies trained together must share d_o; got {laws}")
        fractions = label_fractions or [0.0] * len(laws)
        if len(fractions) != len(laws):
            raise ValueError(f"give one label fraction per copy: {len(fractions)} for {len(laws)}")
        self.laws, self.seeds = list(laws), [check_int("seed", s, low=0) for s in seeds]
        self.fractions = torch.tensor([check_fraction("label_fraction", f) for f in fractions])
        self.device = resolve_device(device)
        self.num_copies = len(laws)
        self.d_o = laws[0].d_o
        self.d_a = max(law.d_a for law in laws)
        self.noise_width = max(law.noise_width for law in laws)
        self.spec = DataSpec("linear", (self.d_o,), False, self.d_a)
        groups = defaultdict(list)
        for m, (law, seed) in enumerate(zip(laws, self.seeds, strict=True)):
            kind = law.noise if law.noise_width else "none"
            groups[(seed, law.d_a, law.noise_width, kind, law.projection)].append(m)
        # Draws are made in the key order (each key's copies consecutive) and put back in the
        # copies' order when that differs (sort the copies by seed and law to skip that).
        order = [m for index in groups.values() for m in index]
        self._order = None if order == sorted(order) else torch.tensor(order).argsort()
        self._keys, start = [], 0
        for key, index in groups.items():
            self._keys.append(_Key(start, [laws[m] for m in index], key[0], stream))
            start += len(index)
        self._key_fractions = self.fractions[torch.tensor(order)]
        self._buffer: dict[str, Tensor] = {}
        self._next, self._batch_size = self.CHUNK, 0

    @property
    def has_labels(self) -> Tensor:
        return self.fractions > 0

    def _empty(self, n: int) -> dict[str, Tensor]:
        m, padded = self.num_copies, any(key.d_a < self.d_a for key in self._keys)
        return {
            "obs": torch.empty(m, n, self.d_o),
            "next_obs": torch.empty(m, n, self.d_o),
            "action": (torch.zeros if padded else torch.empty)(m, n, self.d_a),
            "noise": torch.zeros(m, n, self.noise_width),
            "label_mask": torch.empty(m, n, dtype=torch.bool),
        }

    def _fill(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        for key in self._keys:
            key.fill(out, self._key_fractions)
        if self._order is not None:
            out = {k: v.index_select(0, self._order) for k, v in out.items()}
        return {k: v.to(self.device) for k, v in out.items()}

    def draw(self, n: int) -> dict[str, Tensor]:
        """n fresh transitions per copy, on the device: obs, next_obs (M, n, d_o); action
        (M, n, d_a_max), zero beyond a copy's d_a; noise (M, n, noise_width), the noise
        probe's target (ε, or b for other agents), zero beyond a copy's width; label_mask
        (M, n) bool."""
        return self._fill(self._empty(check_int("n", n, low=1)))

    def batch(self, n: int) -> dict[str, Tensor]:
        """The next n-transition batch, as :meth:`draw` returns it: batches are drawn
        ``CHUNK`` at a time (fewer, larger operations) and handed out one by one."""
        if self._next == self.CHUNK or n != self._batch_size:
            self._buffer = self._fill(self._empty(n * self.CHUNK))
            self._next, self._batch_size = 0, n
        rows = slice(self._next * n, (self._next + 1) * n)
        self._next += 1
        return {k: v[:, rows] for k, v in self._buffer.items()}

    def sample(self, batch_size: int, **_) -> Transitions:
        """A training batch (the CopyBatches interface)."""
        d = self.batch(batch_size)
        mask = d["label_mask"]
        actions = torch.where(mask[..., None], d["action"], torch.nan)
        return Transitions(d["obs"], d["next_obs"], d["next_obs"], actions, mask)

    def target_widths(self) -> dict[str, list[int]]:
        """Per target, each copy's own width (its dimensions beyond are padding)."""
        return {
            "a": [law.d_a for law in self.laws],
            "o": [law.d_o for law in self.laws],
            "noise": [law.noise_width for law in self.laws],
        }


def _targets(d: dict[str, Tensor]) -> Tensor:
    return torch.cat([d["action"], d["obs"], d["noise"]], dim=-1)


def adam_probes(
    lam: LinearLAM,
    fit_laws: list[FreshLaw],
    test_laws: list[FreshLaw],
    latent: str,
    steps: int = 5000,
    batch_size: int = 128,
    lr: float = 1e-3,
    test_transitions: int = 10_000,
    chunk: int = 1000,
) -> list[dict[str, float]]:
    """Linear probes (with bias) from the frozen LAM's ``latent`` to a, o and the noise.

    Each copy's probes train with Adam (``lr``, default betas) for ``steps`` fresh batches
    of ``batch_size`` transitions of its ``fit_laws`` law, starting from torch's nn.Linear
    initialisation (U(±1/√fan_in), drawn from the copy's ``PROBE`` stream); their loss is
    the squared error summed over the targets' dimensions (Adam's steps are the same as with
    the published per-target means: each weight feeds one target dimension). They are then
    measured on ``test_transitions`` fresh transitions of ``test_laws``.

    Returns per copy ``{"nmse_a", "nmse_o", "nmse_noise"}``: the squared error summed over
    the target's dimensions, divided by the target's total variance on the test set. The
    noise target is ε (i.i.d. noise) or b (other agents); without noise in the test law,
    nmse_noise is 1 (holding none of a noise that is not there is perfect: the package's rule).
    """
    check_choice("latent", latent, LATENTS)
    steps = check_int("steps", steps, low=1)
    m, device, seeds = lam.num_copies, lam.device, lam.seeds
    fit = FreshBatches(fit_laws, seeds, stream=Stream.PROBE, device=device)
    test = FreshBatches(test_laws, seeds, stream=Stream.STREAM_PROBE_TEST, device=device)
    test_widths = test.target_widths()
    if fit.target_widths() != test_widths:
        raise ValueError(
            "the probes' fitting and test laws must have the same target widths (d_a, noise), "
            f"got {fit.target_widths()} and {test_widths}"
        )
    net = lam.module.eval()
    d_in = lam.config.latent_dim if LATENTS[latent] == "d_z" else fit.d_o
    d_out = fit.d_a + fit.d_o + fit.noise_width
    offsets = {"a": 0, "o": fit.d_a, "noise": fit.d_a + fit.d_o}
    # Each copy's probes start from its own draw of its own widths (so they do not depend
    # on the copies beside it); the padding columns start at 0 and fit zero targets.
    bound = 1 / math.sqrt(d_in)
    W, b = torch.zeros(m, d_in, d_out), torch.zeros(m, 1, d_out)
    for i, seed in enumerate(seeds):
        g = torch_generator(seed, Stream.PROBE)
        cols = torch.cat([torch.arange(offsets[t], offsets[t] + test_widths[t][i])
                          for t in PROBE_TARGETS])  # fmt: skip
        W[i][:, cols] = (torch.rand(d_in, len(cols), generator=g) * 2 - 1) * bound
        b[i, 0, cols] = (torch.rand(len(cols), generator=g) * 2 - 1) * bound
    W, b = W.to(device).requires_grad_(), b.to(device).requires_grad_()
    optimizer = torch.optim.Adam([W, b], lr=lr, fused=True)
    for _ in range(steps):
        d = fit.batch(batch_size)
        with torch.no_grad():
            x = net.latent(latent, d["obs"], d["next_obs"])
        loss = (x @ W + b - _targets(d)).square().sum(-1).mean(-1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # Measure in chunks: sums of squared errors, of y and of y² per copy and dimension.
    n_done, sq_err = 0, torch.zeros(m, d_out, dtype=torch.float64, device=device)
    total = torch.zeros_like(sq_err)
    total_sq = torch.zeros_like(sq_err)
    with torch.no_grad():
        while n_done < test_transitions:
            n = min(chunk, test_transitions - n_done)
            d = test.draw(n)
            y = _targets(d).double()
            pred = (net.latent(latent, d["obs"], d["next_obs"]) @ W + b).double()
            sq_err += (pred - y).square().sum(1)
            total += y.sum(1)
            total_sq += y.square().sum(1)
            n_done += n
    variance = (total_sq / n_done - (total / n_done).square()).cpu()
    sq_err = (sq_err / n_done).cpu()
    results = []
    for i in range(m):
        result = {}
        for target in PROBE_TARGETS:
            width = test_widths[target][i]
            if width == 0:
                result[f"nmse_{target}"] = 1.0
                continue
            cols = slice(offsets[target], offsets[target] + width)
            result[f"nmse_{target}"] = float(sq_err[i, cols].sum() / variance[i, cols].sum())
        results.append(result)
    return results


def reconstruction_report(
    lam: LinearLAM, laws: list[FreshLaw], transitions: int = 4096
) -> list[dict[str, float]]:
    """Per copy, on ``transitions`` fresh transitions of its law: ``recon_loss`` E‖ô' − o'‖²
    (no augmentation) and ``analytic_loss``, the PCA minimum of the same transitions'
    o' − o (:func:`~lam_models.lams.linear.analytic_optimum`; the optimum only under a
    random policy, where o' − o is uncorrelated with o)."""
    data = FreshBatches(laws, lam.seeds, stream=Stream.STREAM_RECON, device=lam.device)
    d = data.draw(check_int("transitions", transitions, low=2))
    loss = lam.module.reconstruction_loss(d["obs"], d["next_obs"]).cpu()
    delta = (d["next_obs"] - d["obs"]).cpu()
    return [
        {"recon_loss": float(loss[i]),
         "analytic_loss": analytic_optimum(delta[i], lam.config.latent_dim).min_loss}
        for i in range(lam.num_copies)
    ]  # fmt: skip


PROBE_DATA = ("training", "noise_free", "random_policy")


@dataclass(frozen=True)
class ProbePlan:
    """How a copy is scored: which latent (:data:`~lam_models.lams.linear.LATENTS`), on which
    law the probes are fitted and measured (``training``: the copy's own law;
    ``noise_free``: without its noise; ``random_policy``: with χ = 0), and the probes' Adam
    schedule (:func:`adam_probes`)."""

    latent: str = option("change", "the latent probed (LATENTS)", choices=LATENTS)
    fit: str = option("training", "the law the probes are fitted on", choices=PROBE_DATA)
    test: str = option("training", "the law the probes are measured on", choices=PROBE_DATA)
    steps: int = fields.steps(5000)
    batch_size: int = fields.batch_size()
    lr: float = fields.lr(1e-3)
    test_transitions: int = option(10_000, "fresh transitions the probes are measured on", low=1)

    __post_init__ = check_fields

    def law(self, law: FreshLaw, which: str) -> FreshLaw:
        return {"training": law, "noise_free": law.noise_free(),
                "random_policy": law.random_policy()}[which]  # fmt: skip


def train_and_probe(
    configs: list,
    laws: list[FreshLaw],
    seeds: list[int],
    label_fractions: list[float],
    probes: list[ProbePlan],
    device: str | torch.device = "cpu",
    recon_transitions: int = 4096,
) -> list[dict[str, float]]:
    """Train M copies together on fresh batches of their laws, then score each copy with
    its :class:`ProbePlan` (copies with the same plan are probed together).

    A plain function of picklable arguments, for worker processes. Returns per copy
    ``nmse_a``, ``nmse_o``, ``nmse_noise`` (:func:`adam_probes`), ``recon_loss`` and
    ``analytic_loss`` (:func:`reconstruction_report`), and the whole group's
    ``train_seconds`` / ``probe_seconds`` (wall clock) and ``train_cpu_seconds`` /
    ``probe_cpu_seconds`` (this process's CPU time: on a busy machine, what the work would
    take alone on one core, far better than the wall clock).
    """
    import time

    start, cpu_start = time.perf_counter(), time.process_time()
    data = FreshBatches(laws, seeds, label_fractions, device=device)
    lam = LinearLAM.train(configs, data, seeds, device=device)
    trained, cpu_trained = time.perf_counter(), time.process_time()
    results: list[dict[str, float]] = [{} for _ in seeds]
    by_plan = defaultdict(list)
    for m, plan in enumerate(probes):
        by_plan[plan].append(m)
    for plan, index in by_plan.items():
        part = lam.copy(index) if len(index) < lam.num_copies else lam
        scores = adam_probes(
            part,
            [plan.law(laws[m], plan.fit) for m in index],
            [plan.law(laws[m], plan.test) for m in index],
            plan.latent,
            plan.steps,
            plan.batch_size,
            plan.lr,
            plan.test_transitions,
        )
        for m, score in zip(index, scores, strict=True):
            results[m].update(score)
    for m, report in enumerate(reconstruction_report(lam, laws, recon_transitions)):
        results[m].update(report)
    probed, cpu_probed = time.perf_counter(), time.process_time()
    for r in results:
        r.update(train_seconds=trained - start, probe_seconds=probed - trained,
                 train_cpu_seconds=cpu_trained - cpu_start,
                 probe_cpu_seconds=cpu_probed - cpu_trained)  # fmt: skip
    return results
