"""Train one LAM and print its metrics.

    python -m lam_models.train linear --dataset ID [options]   (lam_models.train_linear)
    python -m lam_models.train vq --dataset ID [options]       (lam_models.train_vq)
    python -m lam_models.train laom --dataset ID [options]     (lam_models.train_laom)

Each method's pipeline lives in its own ``train_<method>.py``; this only dispatches.
``python -m lam_models.train METHOD --help`` lists a method's options.
"""

from __future__ import annotations

import importlib
import sys

METHODS = {
    "linear": "lam_models.train_linear",
    "vq": "lam_models.train_vq",
    "laom": "lam_models.train_laom",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nmethods: " + ", ".join(METHODS))
        return 0 if argv else 2
    method, rest = argv[0], argv[1:]
    if method not in METHODS:
        print(f"error: unknown method {method!r}; allowed: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(METHODS[method])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
