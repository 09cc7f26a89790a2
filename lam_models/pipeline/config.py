"""What a pipeline run is: :class:`PipelineConfig`, saved as ``config.json`` in the run folder.

It nests the method's own configuration (``lam_config``, an instance of the LAM's
``Config``): the LAM's pipeline defaults, then the settings given (``lam_options``, the
``--lam-<field>`` and ``--lam-option`` flags). A folder's ``config.json`` written before the
nesting (``lam_options`` alone) loads to the same configuration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lam_envs.utils.config import Checked, option
from lam_envs.utils.validate import check_fraction
from lam_models.lams.base import LAM, config_from_dict, get_lam
from lam_models.split import held_out_option

__all__ = ["DECODER_INPUTS", "POLICY_ENCODERS", "PipelineConfig", "PipelineError"]

#: What the decoder may read: the relabelled latent z, or the latent policy's output π(o).
DECODER_INPUTS = ("latent", "actor")
#: What the policies on observations are (the decoder is an MLP either way).
POLICY_ENCODERS = ("mlp", "cnn")


class PipelineError(ValueError):
    """A stage that cannot run: missing artefacts, or a run folder made with other settings."""


def _some_labels(name: str, value: Any) -> float:
    if check_fraction(name, value) == 0:
        raise ValueError(f"{name} must be in (0, 1], got 0: the decoder needs labels")
    return value


@dataclass
class PipelineConfig(Checked):
    """Everything a pipeline run needs; saved as ``config.json`` in the run folder."""

    dataset: str = option("", "Minari id or path of a lam_envs.collect dataset")
    lam: str = option("vq", "which LAM (a registered name: linear, vq, laom, ...)")
    lam_options: dict[str, Any] = dataclasses.field(
        default_factory=dict,
        compare=False,  # what was given; lam_config is what it means
        metadata={
            "help": "the LAM's settings over its pipeline defaults",
            "flags": ("--lam-option",),
        },
    )
    label_fraction: float | None = option(
        None,
        "labelled subset: this share of the train transitions, at most the dataset's "
        "labelled share; none = the dataset's labelled subset",
        check=_some_labels,
    )
    held_out: float = held_out_option("share of episodes held out (agreement and probes)")
    seed: int = option(0, "seed of split, label subset, models and rollouts", low=0)
    policy_steps: int = option(1500, "updates of each policy and of the decoder", low=1)
    width: int = option(64, "hidden units of the policies and the decoder", low=1)
    policy_encoder: str = option(
        "mlp",
        "what the policies on observations are: mlp (on the flattened observation) or cnn "
        "(strided convolutions, then the mlp; image observations (C, H, W) only)",
        choices=POLICY_ENCODERS,
    )
    rollout_episodes: int = option(32, "episodes each policy is rolled out for", low=1)
    decoder_input: str = option(
        "latent",
        "what the decoder reads: latent (z of the transition) or actor (π(o), LAOM's)",
        choices=DECODER_INPUTS,
    )
    #: The method's configuration (its ``Config``); built from ``lam_options`` when None.
    lam_config: Any = dataclasses.field(default=None, metadata={"help": "the LAM's Config"})

    def __post_init__(self) -> None:
        super().__post_init__()
        cls = self.lam_class()  # the LAM's name and settings, checked now
        given = self.lam_config
        if given is None:
            base = dict(cls.pipeline_defaults)
        elif isinstance(given, dict):  # from config.json
            base = given
        else:
            base = {f.name: getattr(given, f.name) for f in dataclasses.fields(given)}
        self.lam_config = config_from_dict(cls.Config, {**base, **self.lam_options})

    def lam_class(self) -> type[LAM]:
        return get_lam(self.lam)

    def differences(self, other: PipelineConfig) -> str:
        """The settings where ``other`` differs, "name=mine (folder: other's)", the LAM's as
        ``lam_config.steps=...``."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        out = []
        for f in dataclasses.fields(self):
            if not f.compare or mine[f.name] == theirs[f.name]:
                continue
            if isinstance(mine[f.name], dict) and isinstance(theirs[f.name], dict):
                out += [
                    f"{f.name}.{k}={mine[f.name].get(k)!r} (folder: {theirs[f.name].get(k)!r})"
                    for k in {**mine[f.name], **theirs[f.name]}
                    if mine[f.name].get(k) != theirs[f.name].get(k)
                ]
            else:
                out.append(f"{f.name}={mine[f.name]!r} (folder: {theirs[f.name]!r})")
        return ", ".join(out)

    @classmethod
    def quick(cls, **overrides: Any) -> PipelineConfig:
        """A configuration small enough for tests and demos (seconds, not minutes)."""
        options = {"steps": 400, **overrides.pop("lam_options", {})}
        return cls(
            **{"policy_steps": 400, "rollout_episodes": 8, "lam_options": options, **overrides}
        )
