"""The method tables the impute and align registries are filled from."""

from __future__ import annotations

import pytest

from cellweave.align import solvers
from cellweave.impute import registry as impute_registry


@pytest.mark.parametrize(
    ("module", "registry"),
    [(impute_registry, impute_registry.METHODS), (solvers, solvers.SOLVERS)],
)
def test_every_row_has_one_description_and_is_registered_in_order(module, registry):
    names = [row[0] for row in module.TABLE]
    assert len(set(names)) == len(names)
    assert set(module.DESCRIPTIONS) == set(names)
    assert list(registry) == names
    for name, runner, kind, *_ in module.TABLE:
        method = registry[name]
        assert (method.runner, method.kind) == (runner, kind)
        assert method.description == module.DESCRIPTIONS[name]


def test_rows_carry_their_meta():
    assert impute_registry.METHODS["rings"].spatial
    assert not impute_registry.METHODS["knn"].spatial
    assert solvers.SOLVERS["structure"].meta["selected_by"] == "structure_only=True"
    # the models share one declaration of the spatial-loss options
    mf, ae = impute_registry.METHODS["mf"], impute_registry.METHODS["ae"]
    for option in ("weights", "similarity", "similarity_features", "n_neighbors"):
        assert mf.options[option] is ae.options[option]
