"""Test-wide settings."""

import torch

# The suite's models are tiny: one thread is faster than two fighting over a busy CPU.
torch.set_num_threads(1)
