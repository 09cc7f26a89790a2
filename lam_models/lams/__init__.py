"""The built-in latent action models, registered on import (:mod:`lam_models.lam`):

- ``linear``: the linear LAM (:mod:`lam_models.lams.linear`);
- ``vq``: the package's VQ LAM for the grid (:mod:`lam_models.lams.vq`);
- ``laom``: LAOM as published (:mod:`lam_models.lams.laom`);
- ``laom-mlp``: the package's LAOM-style variant, MLP encoder (:mod:`lam_models.lams.laom_mlp`);
- ``idm``: an inverse dynamics model trained on the labelled subset alone, its latent the
  predicted action (:mod:`lam_models.lams.idm`).
"""

from lam_models.lams.idm import IDMLAM
from lam_models.lams.laom import LAOMLAM
from lam_models.lams.laom_mlp import LAOMMLPLAM
from lam_models.lams.linear import LinearLAM
from lam_models.lams.vq import VQLAM

__all__ = ["IDMLAM", "LAOMLAM", "LAOMMLPLAM", "LinearLAM", "VQLAM"]
