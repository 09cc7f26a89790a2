"""Helpers every lam-envs command shares: argument checks that name the bad value
(:mod:`~lam_envs.utils.validate`), configuration dataclasses whose fields carry their help
and bounds (:mod:`~lam_envs.utils.config`) and the flags generated from them
(:mod:`~lam_envs.utils.flags`), the command-line plumbing (:mod:`~lam_envs.utils.cli`:
one-line errors, Ctrl-C, progress bars), and writing outputs safely
(:mod:`~lam_envs.utils.outputs`, :mod:`~lam_envs.utils.staging`: claims, atomic
publication, never overwriting without ``--overwrite``)."""
