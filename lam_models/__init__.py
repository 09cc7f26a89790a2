"""Latent action models (LAMs), their trainers, probes and metrics."""
