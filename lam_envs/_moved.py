"""Old import paths of moved modules: they keep working, with a ``DeprecationWarning``,
until lam-envs 0.2 (see CHANGELOG.md).

``import lam_envs.grid`` (or ``from lam_envs.grid import X``) imports the module's new
home, ``lam_envs.envs.grid``, and binds the old name to that same module object, so
attributes, monkeypatching and pickled references agree. A package adds its own table
with :func:`add_moved_modules` when it is imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

REMOVED_IN = "0.2"

#: old module path -> new module path
MOVED: dict[str, str] = {}


def add_moved_modules(table: dict[str, str]) -> None:
    """Serve each old path in ``table`` from its new module (idempotent)."""
    MOVED.update(table)
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old path works until lam-envs {REMOVED_IN} "
            "(see CHANGELOG.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        self._spec = module.__spec__  # the import system overwrites __spec__: restore it
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec


add_moved_modules(
    {
        "lam_envs._core": "lam_envs.envs.base",
        "lam_envs._pool": "lam_envs.envs._pool",
        "lam_envs._rng": "lam_envs.envs._rng",
        "lam_envs.linear": "lam_envs.envs.linear",
        "lam_envs.grid": "lam_envs.envs.grid",
        "lam_envs.grid_distractors": "lam_envs.envs.grid_distractors",
        "lam_envs._collect_config": "lam_envs.collect.config",
        "lam_envs._shards": "lam_envs.collect.shards",
        "lam_envs._workers": "lam_envs.collect.workers",
        "lam_envs._minari_writer": "lam_envs.collect.writer",
        "lam_envs._staging": "lam_envs.utils.staging",
        "lam_envs._outputs": "lam_envs.utils.outputs",
        "lam_envs.cli": "lam_envs.utils.cli",
        "lam_envs.validate": "lam_envs.utils.validate",
        "lam_envs._contract_checks": "lam_envs.dataset",
    }
)
