"""Named random streams: every source of randomness in a run has its own seed, derived
from the run's seed and the stream's name, never from a magic offset.

    from lam_models.seeding import Stream, numpy_rng, torch_generator

    rng = numpy_rng(seed, Stream.LABELS)                # which train transitions are labelled
    g = torch_generator(seed, Stream.BATCHES)           # which transitions a batch holds

Streams are independent (``numpy.random.SeedSequence([seed, stream])``), so drawing more
from one (a longer training run, a larger batch) never changes what another draws: a LAM
trained for more steps sees the same label subset and the same held-out split. Torch
generators live on the CPU so a run draws the same numbers on every device.
"""

from __future__ import annotations

import enum

import numpy as np
import torch

__all__ = ["Stream", "derive_seed", "numpy_rng", "torch_generator"]


class Stream(enum.IntEnum):
    """The independent random streams of a run (the value is part of the derived seed)."""

    BATCHES = 0  # which training transitions each batch holds
    EVAL_SUBSET = 1  # which held-out (or train) transitions an evaluation uses
    STREAM_PROBE_TEST = 2  # fresh transitions the probes are measured on (streamed data)
    STREAM_TRAIN_POOL = 3  # a fixed pool drawn from a stream
    STREAM_RECON = 4  # fresh transitions the reconstruction loss is measured on
    AUGMENT = 5  # augmentation draws, and the model's own draws (VQ codebook revivals)
    LABELS = 6  # which train transitions form the labelled subset
    LABELLED_BATCHES = 7  # which labelled transitions a supervised batch holds
    POLICY_INIT = 8  # initial weights of the BC policies and the decoder
    POLICY_BATCHES = 9  # their minibatches
    ROLLOUT = 10  # environment seeds of the rollouts
    PROBE = 11  # probes trained by gradient (their initialisation and batches)
    MODEL_INIT = 12  # a model's initial weights (the published VQ LAM)
    CODEBOOK = 13  # a codebook's own draws: its initial codes, the encoder outputs it resets to
    POLICY_MATRIX = 14  # a fixed random policy matrix (the published F6a policy's Π)
    SCORE_BATCHES = 15  # batches scored during training on other data (Table 1's policy row)


def derive_seed(seed: int, stream: int) -> int:
    """The seed of ``stream`` for a run seeded ``seed`` (a non-negative 63-bit integer)."""
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1)[0] >> 1)


def numpy_rng(seed: int, stream: int) -> np.random.Generator:
    """A numpy generator of ``stream``."""
    return np.random.default_rng(derive_seed(seed, stream))


def torch_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU torch generator of ``stream`` (CPU: the same draws on every device)."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))
