"""Genes through a mapping: predict held-out genes (:func:`predict_genes`) and project any
reference gene onto the spots (:func:`project_genes`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import InputError, MissingKeyError, NoSharedFeaturesError
from .fractions import _check_cells, _check_spots
from .gene_case import same_gene
from .result import Mapping

__all__ = ["predict_genes", "project_genes"]

# Genes projected at once in project_genes (bounds the dense block in memory).
_GENE_BLOCK = 1024


def predict_genes(
    adata_sc: AnnData,
    adata_sp: AnnData,
    genes: Sequence[str],
    *,
    method: str = "auto",
    random_state: int = 0,
    scale: str = "counts",
    layer_sc: str | None = None,
    layer_sp: str | None = None,
    device: str = "auto",
    **params: Any,
) -> np.ndarray:
    """Predict ``genes`` at every spot from the reference, mapping on the other shared genes.

    The held-out ``genes`` are ignored in ``adata_sp`` even if present; the mapping uses the
    remaining shared genes. Nothing is written into the inputs.

    Parameters
    ----------
    adata_sc, adata_sp
        Reference and spatial data (see :func:`map_cells`).
    genes
        Genes of ``adata_sc`` to predict.
    method, random_state, layer_sc, layer_sp, device, **params
        See :func:`map_cells`.
    scale
        ``"counts"`` (default): expected values on the spatial data's scale (relative
        expression times each spot's total over the mapped genes); ``"proportions"``:
        relative expression only.

    Returns
    -------
    ``(adata_sp.n_obs, len(genes))`` float64 array.
    """
    genes = _reference_genes(adata_sc, genes, what="gene(s) to predict")
    train = _mapped_genes(adata_sc, adata_sp, genes)
    if len(train) < 2:
        raise NoSharedFeaturesError(
            f"adata_sp shares {len(train)} gene(s) with adata_sc besides the {len(genes)} to "
            "predict, but at least 2 are needed to map cells: check that both data sets name "
            "genes the same way"
        )
    from .methods import compute_mapping  # methods reads this module's _columns

    mapping = compute_mapping(
        adata_sc,
        adata_sp,
        method=method,
        genes=train,
        layer_sc=layer_sc,
        layer_sp=layer_sp,
        random_state=random_state,
        device=device,
        params=params,
    )
    return mapping.predict(_columns(adata_sc, genes, layer_sc), scale=scale)


def _reference_genes(adata_sc: AnnData, genes: Sequence[str], *, what: str) -> list[str]:
    """``genes`` as strings, raising :class:`MissingKeyError` when one is not in ``adata_sc``."""
    genes = [str(g) for g in genes]
    missing = [g for g in genes if g not in adata_sc.var_names]
    if missing:
        raise MissingKeyError(
            f"{len(missing)} {what} are not in adata_sc (e.g. {missing[:3]}): pass genes from "
            "adata_sc.var_names"
        )
    return genes


def _mapped_genes(adata_sc: AnnData, adata_sp: AnnData, held_out: Sequence[str]) -> list[str]:
    """The genes of ``adata_sp`` (in its order) also in ``adata_sc``, except ``held_out``: what
    :func:`predict_genes` maps on."""
    held_out = set(held_out)
    return [g for g in adata_sp.var_names if g in adata_sc.var_names and g not in held_out]


def _columns(adata: AnnData, genes: Sequence[str], layer: str | None) -> Any:
    X = adata.X if layer is None else adata.layers[layer]
    return X[:, adata.var_names.get_indexer(list(genes))]


def _resolve(mapping_or_adata_sp: Mapping | AnnData, adata_sp: AnnData | None):
    if isinstance(mapping_or_adata_sp, Mapping):
        return mapping_or_adata_sp, adata_sp
    if isinstance(mapping_or_adata_sp, AnnData):
        return Mapping.from_adata(mapping_or_adata_sp), mapping_or_adata_sp
    raise InputError(
        f"expected a Mapping or the spatial AnnData, got {type(mapping_or_adata_sp).__name__}: "
        "pass the result of map_cells or the adata_sp it was run on"
    )


def project_genes(
    mapping_or_adata_sp: Mapping | AnnData,
    adata_sc: AnnData,
    *,
    genes: Sequence[str] | None = None,
    adata_sp: AnnData | None = None,
    scale: str = "counts",
    layer_sc: str | None = None,
    key_added: str | None = "predicted_genes",
) -> AnnData:
    """Predict reference genes at every spot through a mapping.

    Parameters
    ----------
    mapping_or_adata_sp
        The :class:`Mapping` returned by :func:`map_cells`, or the spatial AnnData holding it
        in ``uns["mapping"]``.
    adata_sc
        The reference the mapping was computed on.
    genes
        Genes of ``adata_sc`` to predict (default: all of them).
    adata_sp
        The spatial data (when a Mapping is passed first), to copy ``obs``/``obsm`` from and
        to write ``obsm[key_added]`` into.
    scale
        ``"counts"`` (expected values on the spatial scale) or ``"proportions"`` (relative
        expression); see :meth:`Mapping.predict`.
    layer_sc
        Layer of ``adata_sc`` to project instead of ``X``.
    key_added
        Write the predictions as a DataFrame to ``adata_sp.obsm[key_added]`` (``None``: do
        not write).

    Returns
    -------
    A new AnnData, spots x genes, with the predictions in ``X``; ``obs``, ``obsm`` (the
    coordinates ``obsm["spatial"]`` among them) and the tissue images and scale factors
    ``uns["spatial"]`` of ``adata_sp`` (when available), so ``sc.pl.spatial`` draws it as it
    draws ``adata_sp``; ``var["measured"]`` (the gene was one the mapping compared) and
    ``uns["mapping_params"]``.
    """
    mapping, target = _resolve(mapping_or_adata_sp, adata_sp)
    _check_cells(mapping, adata_sc)
    if target is not None:
        _check_spots(mapping, target)
    if genes is None:
        genes = list(adata_sc.var_names)
    genes = _reference_genes(adata_sc, genes, what="gene(s)")
    blocks = [
        mapping.predict(_columns(adata_sc, genes[i : i + _GENE_BLOCK], layer_sc), scale=scale)
        for i in range(0, len(genes), _GENE_BLOCK)
    ]
    pred = np.hstack(blocks).astype(np.float32) if blocks else np.zeros((mapping.n_spots, 0))
    obs = target.obs.copy() if target is not None else pd.DataFrame(index=mapping.spot_names)
    out = AnnData(X=pred, obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
    if target is not None:
        for key, value in target.obsm.items():
            out.obsm[key] = value
        if key_added is not None:
            target.obsm[key_added] = pd.DataFrame(pred, index=target.obs_names, columns=genes)
        if "spatial" in target.uns:  # images and scale factors: sc.pl.spatial needs them
            out.uns["spatial"] = target.uns["spatial"]
    gene_case = mapping.params.get("gene_case", "exact")
    out.var["measured"] = same_gene(out.var_names, mapping.genes, gene_case)
    out.uns["mapping_params"] = {"method": mapping.method, "scale": scale}
    return out
