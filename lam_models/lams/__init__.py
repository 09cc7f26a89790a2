"""The built-in latent action models, registered on import (:mod:`lam_models.lam`):

- ``linear``: the linear LAM (:mod:`lam_models.lams.linear`);
- ``vq``: the package's VQ LAM for the grid (:mod:`lam_models.lams.vq`);
- ``laom``: the LAOM-style LAM (:mod:`lam_models.lams.laom`).
"""

from lam_models.lams.laom import LAOMLAM
from lam_models.lams.linear import LinearLAM
from lam_models.lams.vq import VQLAM

__all__ = ["LAOMLAM", "LinearLAM", "VQLAM"]
