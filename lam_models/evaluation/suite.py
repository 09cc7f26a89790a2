"""The report card's suite: its settings, the methods it scores, and which method fits
which setting.

A *setting* (:class:`Setting`) is a dataset recipe of ``datasets/``, a label budget and
the nuisances a latent should not hold; :data:`SUITES` are the named sets of settings
(``full``, ``quick``, ``tiny``). A *method* is any function ``train(data, seed) ->
latent_fn`` (:mod:`lam_models.benchmark` says what it gets); the built-in ones
(:class:`BuiltinMethod`) are the registered LAMs, at the CPU sizes each LAM declares
(``LAM.cpu_sizes``) or at their own defaults (``sizes="published"``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lam_envs.envs.family import family_of
from lam_envs.utils.validate import check_choice
from lam_models.lams.base import get_lam, registry
from lam_models.split import DataSplit

__all__ = [
    "BUILTIN_VARIANTS",
    "IMAGE_PIXELS",
    "MAIN_DISTRACTING",
    "SIZES",
    "STANDARD",
    "SUITES",
    "SUITE_VERSION",
    "BuiltinMethod",
    "LatentFn",
    "Method",
    "Setting",
    "Suite",
    "applies",
    "builtin_method",
    "call_method",
    "check_method",
    "resolve_method",
    "setting_family",
    "standard_settings",
]

#: Bumped whenever a setting, its data or its metrics change: cards of different versions
#: are not comparable. 2: the linear settings on short episodes (``card-linear-*``), the
#: goal task's distracting settings, the unconverged mark, the probes' cut-off.
SUITE_VERSION = "2"

LatentFn = Callable[[torch.Tensor, torch.Tensor], Any]
Method = Callable[..., LatentFn]


@dataclass(frozen=True)
class Setting:
    """One standard setting: its dataset (a recipe of ``datasets/``), the label budget the
    methods get, and the nuisances a latent should not hold (oracle fields)."""

    name: str
    recipe: str
    nuisance: tuple[str, ...] = ()
    label_fraction: float | None = None  # the labelled subset (None: the recipe's)
    description: str = ""


def setting_family(setting: Setting) -> str:
    """The environment family of a setting's data (``"linear"``, ``"grid"``, or a family
    registered later): its recipe's environment, asked of the family registry."""
    from lam_models.recipes import recipe_config

    return family_of(recipe_config(setting.recipe).env).name


#: The recipe of the main distracting setting (``distracting/goal-lights``): the goal task
#: with its main distractors. Swapping the main distracting preset is this one line.
MAIN_DISTRACTING = "grid-goal-lights"

#: The full suite, version :data:`SUITE_VERSION`. The linear settings run on short episodes
#: (``card-linear-*``: 2,000 episodes of 10 steps), where o's variance along X's columns
#: stays small and the linear LAM converges within the card's budget; the figures'
#: ``linear-*`` recipes (random walks of 200 steps) stay as the reproductions use them.
STANDARD = (
    Setting("linear/no-noise", "card-linear-no-noise", (), None, "o' = o + X a"),
    Setting("linear/iid", "card-linear-iid-0p5", ("eps",), None, "i.i.d. noise σ = 0.5"),
    Setting("linear/agents-weak", "card-linear-other-agents-0p5", ("eps",), None, "σ_exo = 0.5"),
    Setting("linear/agents-strong", "card-linear-other-agents-2p0", ("eps",), None, "σ_exo = 2"),
    Setting("linear/deterministic", "card-linear-chi-1p0", (), None, "policy a = Π o (χ = 1)"),
    Setting("grid/none", "grid-none-uniform", (), None, "no noise row"),
    Setting("grid/low", "grid-low-uniform", ("noise",), None, "noise row 0/1"),
    Setting("grid/high", "grid-high-uniform", ("noise",), None, "noise row 0/2"),
    Setting("grid/correlated", "grid-low-correlated", ("noise",), None, "snaking ε = 0.05"),
    # The distracting grid (32×32 pixels), the goal task: clean, and with its main
    # distractors, whose low-dimensional change over a transition is the nuisance.
    Setting("distracting/goal-clean", "grid-goal", (), None, "the goal task, no distractor"),
    Setting(
        "distracting/goal-lights",
        MAIN_DISTRACTING,
        ("distractor_change",),
        None,
        "the goal task with its main distractors",
    ),
)


def standard_settings(*names: str) -> tuple[Setting, ...]:
    """The settings of :data:`STANDARD` named ``names``, in that order."""
    by_name = {s.name: s for s in STANDARD}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}; allowed: {', '.join(by_name)}")
    return tuple(by_name[n] for n in names)


@dataclass(frozen=True)
class Suite:
    """Settings and sizes: ``transitions`` sizes every setting's dataset at that many
    transitions (whole episodes of its recipe's length; None: the recipe's own), ``steps``
    is the training budget of the built-in methods."""

    settings: tuple[Setting, ...]
    transitions: int | None
    steps: int
    seeds: int = 3


SUITES = {
    # the reference card: every built-in on every setting (about an hour on two CPU cores
    # at the cpu sizes, collection included)
    "full": Suite(STANDARD, None, 1500),
    # 8,000 transitions per setting: 40 episodes of the grid's 200 steps, 80 of the goal
    # task's 100, 800 of the linear settings' 10
    "quick": Suite(STANDARD, 8000, 800),
    # the tests' version: two settings, seconds
    "tiny": Suite(standard_settings("linear/agents-strong", "grid/low"), 2400, 60, seeds=2),
}


# ------------------------------------------------------------------------------ methods

#: Frames of more pixels than this are images (the distracting grid's 32×32), where the
#: built-in methods add their ``cpu_sizes["image"]``.
IMAGE_PIXELS = 64

#: The built-in methods' sizes: ``cpu`` (each LAM's ``cpu_sizes``: smaller batches and
#: encoders, for a CPU) or ``published`` (each LAM's own defaults everywhere: a GPU job).
SIZES = ("cpu", "published")

# (registered LAM, its settings) of the built-in methods that are not plain registry names.
BUILTIN_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "laom+labels": ("laom", {"action_head": True, "action_weight": 1.0}),
}


@dataclass(frozen=True)
class BuiltinMethod:
    """A registered LAM as a benchmark method (picklable, for worker processes), at
    ``sizes`` (a name of :data:`SIZES`)."""

    name: str
    steps: int
    sizes: str = "cpu"

    @property
    def lam_name(self) -> str:
        return BUILTIN_VARIANTS.get(self.name, (self.name, {}))[0]

    def options(self, image: bool) -> dict[str, Any] | None:
        """Its config overrides on a setting (``image``: frames of more than
        :data:`IMAGE_PIXELS` pixels); None where the sizes leave it out. At ``cpu`` sizes:
        the LAM's ``cpu_sizes["all"]``, and on images its ``cpu_sizes["image"]`` on top."""
        options = get_lam(self.lam_name).cpu_options(image) if self.sizes == "cpu" else {}
        if options is None:
            return None
        return {**options, **BUILTIN_VARIANTS.get(self.name, (self.name, {}))[1]}

    def __call__(self, data: DataSplit, seed: int, device: str = "cpu") -> LatentFn:
        cls = get_lam(self.lam_name)
        options = self.options(int(np.prod(data.spec.obs_shape)) > IMAGE_PIXELS)
        if options is None:
            raise ValueError(f"{self.name} does not run on these frames at {self.sizes} sizes")
        config = cls.Config(**{**cls.pipeline_defaults, **options, "steps": self.steps})
        lam = cls.train(config, [data], [seed], device=device)
        return LAMLatents(lam)

    def supports(self, kind: str) -> bool:
        return get_lam(self.lam_name).fits(kind)


class LAMLatents:
    """A trained built-in LAM as a latent function ``(o, o_next) -> z``; ``history``: the
    frames of each observation its encoder reads (stacked frames, ``laom``: the card passes
    them so); ``loss_history``: its training loss at each log point (its
    :class:`~lam_models.lams.base.TrainingLog`), which the card's unconverged mark reads."""

    def __init__(self, lam: Any):
        self.lam, self.history = lam, lam.frame_stack

    @property
    def loss_history(self) -> list[float]:
        return list(self.lam.history[0].get("loss", [])) if self.lam.history else []

    def __call__(self, o: Any, o_next: Any) -> np.ndarray:
        return self.lam.latents(o, o_next)[0]


def builtin_method(name: str, steps: int, sizes: str = "cpu") -> BuiltinMethod:
    """The built-in method ``name`` (a registered LAM, or ``laom+labels``) at ``sizes``
    (a name of :data:`SIZES`)."""
    check_choice("sizes", sizes, SIZES)
    if name not in BUILTIN_VARIANTS:
        try:
            get_lam(name)
        except ValueError:
            known = [*registry, *BUILTIN_VARIANTS]
            raise ValueError(
                f"unknown method {name!r}: give a built-in name ({', '.join(known)}) or "
                "MODULE:FUNCTION"
            ) from None
    return BuiltinMethod(name, steps, sizes)


def resolve_method(spec: str | Method, steps: int, sizes: str = "cpu") -> tuple[str, Method]:
    """(its name on the card, the method) of a built-in name, ``MODULE:FUNCTION`` or a
    callable."""
    if callable(spec):
        name = getattr(spec, "__name__", "method")
        return name, check_method(spec, name)
    if ":" not in spec:
        return spec, builtin_method(spec, steps, sizes)
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"--method {spec!r}: cannot import {module_name!r} ({error})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"--method {spec!r}: {module_name!r} has no function {function_name!r}")
    return spec, check_method(function, spec)


def check_method(function: Method, name: str) -> Method:
    """``function`` if it can be called as ``train(data, seed)`` (and, where it names a
    ``device`` parameter, with ``device=``); refused naming its signature otherwise."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return function  # a builtin without a signature: its call will tell
    try:
        signature.bind(None, 0)
    except TypeError:
        raise ValueError(
            f"--method {name!r}: {getattr(function, '__qualname__', function)}{signature} "
            "cannot be called as train(data, seed); a method is a function "
            "train(data, seed[, device=...]) -> latent_fn(o, o_next) -> z"
        ) from None
    return function


def applies(method: Method, setting: Setting, image: bool) -> bool:
    """Whether ``method`` is scored on ``setting`` (``image``: its frames are images): a
    user's method on every setting, a built-in one where its LAM fits the setting's family
    and its sizes do not leave it out."""
    if not isinstance(method, BuiltinMethod):
        return True
    return method.supports(setting_family(setting)) and method.options(image) is not None


def call_method(method: Method, data: DataSplit, seed: int, device: str) -> LatentFn:
    """``method(data, seed[, device=device])``, checked to return a latent function."""
    try:
        takes_device = "device" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        takes_device = False
    latent_fn = method(data, seed, device=device) if takes_device else method(data, seed)
    if not callable(latent_fn):
        name = getattr(method, "__qualname__", getattr(method, "name", method))
        raise ValueError(
            f"method {name} returned {latent_fn!r:.60}, not a function latent_fn(o, o_next) -> z"
        )
    return latent_fn
