"""What every command line of the package shares: one-line errors, ``KEY=VALUE`` values,
and the seeds of a run's independent random streams."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

import numpy as np


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line ``error: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_value(text: str) -> Any:
    """The value of a ``KEY=VALUE`` flag: JSON when it parses (numbers, true, null, lists),
    the text itself otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def derive_seed(seed: int, stream: int) -> int:
    """An independent seed for each of a run's random streams (training, probe fit, ...)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0] >> 1)
