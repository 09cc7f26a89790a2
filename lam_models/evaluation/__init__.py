"""Evaluation: the probes and metrics (:mod:`~lam_models.evaluation.metrics`), scoring any
latent on a dataset (:mod:`~lam_models.evaluation.scoring`), and the report card."""
