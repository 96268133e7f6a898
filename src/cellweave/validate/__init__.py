"""Input checks shared by every cellweave capability.

Each check either returns quietly (or returns the validated object) or raises an
:class:`~cellweave.errors.InputError` subclass whose one-line message names the problem and the
fix. Checks are cheap on large sparse matrices: they look at the stored values (``.data``) of
CSR/CSC/COO matrices, sample entries where a full pass is not needed, and never densify.
"""

from __future__ import annotations

from .content import check_labels, check_min_obs, check_seed, warn_unlabelled_classes
from .features import shared_features
from .fields import (
    check_coordinates,
    check_layer,
    check_nonempty,
    check_obs_key,
    check_spatial,
    check_spread,
    check_unique_names,
    get_matrix,
    matrix_label,
)
from .matrix import (
    check_counts,
    check_finite,
    has_nonzero,
    is_counts,
    log_transformed_problem,
    nonzero_mask,
    normalized_problem,
)
from .objects import check_adata, check_mudata
from .structure import check_sparse, check_structure, sparse_problem

__all__ = [
    "check_adata",
    "check_coordinates",
    "check_counts",
    "check_finite",
    "check_labels",
    "check_layer",
    "check_min_obs",
    "check_mudata",
    "check_nonempty",
    "check_obs_key",
    "check_seed",
    "check_sparse",
    "check_spatial",
    "check_spread",
    "check_structure",
    "check_unique_names",
    "get_matrix",
    "has_nonzero",
    "is_counts",
    "log_transformed_problem",
    "matrix_label",
    "nonzero_mask",
    "normalized_problem",
    "shared_features",
    "sparse_problem",
    "warn_unlabelled_classes",
]
