"""The settings several methods share, declared once with their help and bounds.

Each function returns a :func:`~lam_envs.utils.config.option` field; a method's config takes
the default that is its own::

    @dataclass
    class MyConfig(Checked):
        steps: int = fields.steps(3000)
        lr: float = fields.lr(1e-3)

The config's ``__post_init__`` (:class:`~lam_envs.utils.config.Checked`) checks them all.
"""

from __future__ import annotations

from typing import Any

from lam_envs.utils.config import option

__all__ = [
    "ActionHead",
    "action_head",
    "augment_frames",
    "batch_size",
    "channels",
    "check_channels",
    "codebook_size",
    "kappa",
    "label_batch_size",
    "log_every",
    "lr",
    "score_dataset",
    "score_updates",
    "shift",
    "steps",
    "stem",
    "blocks",
]


def check_channels(name: str, channels: Any) -> tuple[int, ...]:
    """The encoder's stage widths: a non-empty tuple (or list, from a command line) of
    positive ints, as a tuple."""
    from lam_envs.utils.validate import check_int

    if not isinstance(channels, tuple | list) or not channels:
        raise ValueError(f"{name} must be a non-empty tuple of ints, got {channels!r}")
    return tuple(check_int(name, c, low=1) for c in channels)


def _check_dataset(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a dataset id or path, got {value!r}")
    return value


# --------------------------------------------------------------------------- the trainer


def steps(default: int, help: str = "Adam updates") -> Any:
    return option(default, help, low=1)


def batch_size(default: int = 128, help: str = "transitions per update") -> Any:
    return option(default, help, low=1)


def lr(default: float) -> Any:
    return option(default, "Adam learning rate", above=0)


def log_every(default: int = 100) -> Any:
    return option(default, "training-curve resolution, in updates", low=1)


# ------------------------------------------------------------ augmentation and encoders


def kappa(default: float = 0.1, help: str = "") -> Any:
    help = help or "κ, scale of the Gaussian offsets on vector observations"
    return option(default, help, low=0.0)


def augment_frames() -> Any:
    return option(True, "augment every frame on its own (shifts; κ on vectors)")


def shift() -> Any:
    return option(4, "largest random shift of an image, in pixels, each way", low=0)


def channels() -> Any:
    return option(
        (16, 32, 32),
        "channels of the encoder's stages (each halves the image)",
        check=check_channels,
    )


def blocks() -> Any:
    return option(2, "residual blocks per encoder stage", low=1)


def stem(published: str) -> Any:
    return option(1, f"p > 1: cut images into p×p patches first (1: {published})", low=1)


# ------------------------------------------------------------------- the action head


def action_head() -> Any:
    return option(False, "train the linear head E on the labelled subset")


def label_batch_size(default: int) -> Any:
    return option(default, "labelled transitions per update for the head", low=1)


class ActionHead:
    """A config with an action head (``action_head``, ``action_weight``)."""

    action_head: bool
    action_weight: float

    @property
    def effective_action_weight(self) -> float:
        """λ_a, or 0 without the head."""
        return self.action_weight if self.action_head else 0.0


# ---------------------------------------------------------------- the VQ LAMs


def codebook_size() -> Any:
    return option(5, "K, number of codes (>= the number of actions with action prediction)", low=1)


# ------------------------------------------------------- the published losses' scoring


def score_updates() -> Any:
    return option(
        40, "the published losses average the FDM's error over this many last updates", low=0
    )


def score_dataset(help: str) -> Any:
    return option("", help, check=_check_dataset)
