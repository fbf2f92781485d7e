"""Single-image 3D reconstruction by Pivotal Tuning Inversion (spec multiview_pti 1.5).

``invert(G, image, ...)`` -> :class:`InversionResult`; the stages are separate pure functions
(:mod:`.latent`, :mod:`.pivotal`) over the losses in :mod:`.losses`.
"""

from gp3d.inversion.pipeline import invert
from gp3d.inversion.result import InversionResult

__all__ = ["InversionResult", "invert"]
