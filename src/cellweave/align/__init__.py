"""Align spatial sections (or two modalities of one tissue) onto a common frame.

``cellweave.tl.align_sections`` (:func:`~cellweave.align.api.align_sections`) runs three steps,
each its own module: the matching (:mod:`~cellweave.align.plan`: fused Gromov-Wasserstein over
the features of :mod:`~cellweave.align.features` and the geometry), the rigid transform
(:mod:`~cellweave.align.rigid`: Procrustes refined ICP-style) and the optional smooth
displacement field (:mod:`~cellweave.align.nonrigid`). The solvers and their options live in the
shared registry (:data:`SOLVERS`, :mod:`~cellweave.align.solvers`).
"""

from .api import Alignment, align_sections, apply_transform
from .perturb import perturb_section
from .rigid import Transform, procrustes
from .solvers import SOLVERS, check_options

__all__ = [
    "SOLVERS",
    "Alignment",
    "Transform",
    "align_sections",
    "apply_transform",
    "check_options",
    "perturb_section",
    "procrustes",
]
