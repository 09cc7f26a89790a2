"""Latent action models (LAMs), their trainers, probes and metrics.

- :func:`evaluate`: score any LAM's latent, ``(o, o_next) -> z``, on a lam_envs dataset.
- :mod:`lam_models.lam`: the LAM interface and registry (``get_lam``, ``register_lam``);
  the built-in methods live in :mod:`lam_models.lams`.
- :mod:`lam_models.split`: the data split every trainer reads; :mod:`lam_models.data`: the
  dataset loader.
- ``python -m lam_models.train METHOD``, ``python -m lam_models.pipeline``.
"""

from lam_envs.cli import quiet_interrupt_during_startup

quiet_interrupt_during_startup()  # a Ctrl-C while `python -m lam_models.X` imports: exit 130

from lam_models.lam import LAM, get_lam, lam_names, load_lam, register_lam
from lam_models.scoring import evaluate
from lam_models.split import DataSplit

__all__ = ["LAM", "DataSplit", "evaluate", "get_lam", "lam_names", "load_lam", "register_lam"]
