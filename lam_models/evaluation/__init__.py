"""Evaluation: the probes and metrics (:mod:`~lam_models.evaluation.metrics`), scoring any
latent on a dataset (:mod:`~lam_models.evaluation.scoring`), and the report card: its suite
of settings and methods (:mod:`~lam_models.evaluation.suite`) and the card itself
(:mod:`~lam_models.evaluation.card`)."""
