"""Latent action models (LAMs), their trainers, probes and metrics.

- :func:`evaluate`: score any LAM's latent, ``(o, o_next) -> z``, on a lam_envs dataset.
- :mod:`lam_models.lams.base`: the LAM interface and registry (``get_lam``, ``register_lam``);
  the built-in methods live in :mod:`lam_models.lams`.
- :mod:`lam_models.split`: the data split every trainer reads; :mod:`lam_models.data`: the
  dataset loader.
- ``python -m lam_models.train METHOD``, ``python -m lam_models.pipeline``.
"""

from lam_envs.utils.cli import quiet_interrupt_during_startup

quiet_interrupt_during_startup()  # a Ctrl-C while `python -m lam_models.X` imports: exit 130

from lam_envs._moved import add_moved_modules

add_moved_modules(  # old import paths: a DeprecationWarning until lam-envs 0.2
    {
        "lam_models.lam": "lam_models.lams.base",
        "lam_models.flags": "lam_envs.utils.flags",
        "lam_models.metrics": "lam_models.evaluation.metrics",
        "lam_models.scoring": "lam_models.evaluation.scoring",
        "lam_models.bc": "lam_models.pipeline.bc",
        "lam_models.rollout": "lam_models.pipeline.rollout",
    }
)

from lam_models.evaluation.scoring import evaluate
from lam_models.lams.base import LAM, get_lam, lam_names, load_lam, register_lam
from lam_models.split import DataSplit

__all__ = ["LAM", "DataSplit", "evaluate", "get_lam", "lam_names", "load_lam", "register_lam"]
