"""Align spatial sections (or two modalities of one tissue) onto a common frame.

``cellweave.tl.align_sections`` (:func:`~cellweave.align.api.align_sections`) runs three steps,
each its own module: the matching (:mod:`~cellweave.align.plan`: fused Gromov-Wasserstein over
the features of :mod:`~cellweave.align.features` and the geometry), the rigid transform
(:mod:`~cellweave.align.rigid`: Procrustes refined ICP-style) and the optional smooth
displacement field (:mod:`~cellweave.align.nonrigid`). The solvers and their options live in the
shared registry (:data:`SOLVERS`, :mod:`~cellweave.align.solvers`).

Two modalities (RNA vs protein): ``feature_pairs="auto"`` pairs genes with antibodies by name
(:mod:`~cellweave.align.pairs`, on :func:`cellweave.links.gene_protein_links`), and
:func:`transfer_features` (:mod:`~cellweave.align.transfer`) carries the protein panel onto
the RNA section's spots through the matching. :func:`simulate_rna_protein` builds such a pair
with the truth.
"""

from .api import Alignment, align_sections, apply_transform, overlap_fraction
from .pairs import FeaturePairs, read_pairs, resolve_pairs
from .perturb import PROTEIN_PANEL, perturb_section, simulate_rna_protein
from .rigid import Transform, procrustes
from .solvers import SOLVERS, check_options
from .transfer import transfer_features

__all__ = [
    "PROTEIN_PANEL",
    "SOLVERS",
    "Alignment",
    "FeaturePairs",
    "Transform",
    "align_sections",
    "apply_transform",
    "check_options",
    "overlap_fraction",
    "perturb_section",
    "procrustes",
    "read_pairs",
    "resolve_pairs",
    "simulate_rna_protein",
    "transfer_features",
]
