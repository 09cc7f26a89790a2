"""``python -m lam_envs.collect``: see :mod:`lam_envs.collect`."""

from lam_envs.collect import main
from lam_envs.utils.cli import run_main

run_main(main)
