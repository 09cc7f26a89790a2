"""The built-in latent action models, registered on import (:mod:`lam_models.lams.base`):

- ``linear``: the linear LAM (:mod:`lam_models.lams.linear`);
- ``vq``: the package's own VQ LAM for the grid, "ours" (:mod:`lam_models.lams.vq`);
- ``vq-published``: the published grid VQ LAM of Table 1 (:mod:`lam_models.lams.vq_published`);
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
from lam_models.lams.vq_published import PublishedVQLAM

__all__ = ["IDMLAM", "LAOMLAM", "LAOMMLPLAM", "LinearLAM", "PublishedVQLAM", "VQLAM"]
