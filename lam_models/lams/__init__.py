"""The built-in latent action models, registered on import (:mod:`lam_models.lam`):

- ``linear``: the linear LAM (:mod:`lam_models.lams.linear`);
- ``vq``: the package's own VQ LAM for the grid, "ours" (:mod:`lam_models.lams.vq`);
- ``vq-published``: the published grid VQ LAM of Table 1 (:mod:`lam_models.lams.vq_published`);
- ``laom``: the LAOM-style LAM (:mod:`lam_models.lams.laom`).
"""

from lam_models.lams.laom import LAOMLAM
from lam_models.lams.linear import LinearLAM
from lam_models.lams.vq import VQLAM
from lam_models.lams.vq_published import PublishedVQLAM

__all__ = ["LAOMLAM", "LinearLAM", "PublishedVQLAM", "VQLAM"]
