"""``python -m lam_models.pipeline``: see :mod:`lam_models.pipeline`."""

from lam_envs.utils.cli import run_main
from lam_models.pipeline import main

run_main(main)
