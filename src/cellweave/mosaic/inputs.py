"""The inputs of :class:`~.model.MosaicModel`: an AnnData wrapped into a MuData, and the
guidance graph over the model's features from ``mdata.varp`` keys or a links table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..errors import InputError, MissingKeyError
from ..links import gene_protein_links
from .data import MosaicData
from .guidance import graph_from_links
from .kinds import kind_names

__all__ = ["as_mudata", "guidance_graph"]

_AUTO_GRAPHS = ("gene_peak", "gene_protein", "guidance")


def as_mudata(data: Any, modality: str | None):
    """Wrap a one-modality AnnData into a MuData (``modality`` names its kind)."""
    import anndata as ad
    import mudata as md

    if isinstance(data, ad.AnnData):
        if modality is None:
            raise InputError(
                "an AnnData holds one modality: pass modality='rna', 'atac' or 'protein' "
                "(or a MuData for a mosaic)"
            )
        if modality not in kind_names():
            raise InputError(
                f"modality={modality!r} is unknown: use one of {', '.join(kind_names())}"
            )
        with md.set_options(pull_on_update=False):
            mdata = md.MuData({modality: data})
        mdata.obs = data.obs.copy()
        return mdata
    return data


def guidance_graph(mdata: Any, data: MosaicData, graph_key: Any) -> sparse.csr_matrix | None:
    """The guidance graph over the model's features (concatenated modalities)."""
    if graph_key is None:
        return None
    features = pd.Index(
        np.concatenate([np.asarray(m.features, dtype=str) for m in data.modalities])
    )
    if isinstance(graph_key, pd.DataFrame):
        return graph_from_links(graph_key, features)
    if sparse.issparse(graph_key):
        raise InputError(
            "pass a graph as a links table (source/target[/weight/sign]) or as a key of "
            "mdata.varp, not a bare matrix (its feature order is ambiguous)"
        )
    keys = [graph_key] if isinstance(graph_key, str) and graph_key != "auto" else graph_key
    auto = isinstance(graph_key, str) and graph_key == "auto"
    if auto:
        keys = [k for k in _AUTO_GRAPHS if k in mdata.varp]
    total = None
    for key in keys:
        if key not in mdata.varp:
            raise MissingKeyError(
                f"mdata.varp has no graph {key!r} (graphs: {', '.join(mdata.varp) or 'none'}): "
                "pass graph_key=None or build one with cellweave.mosaic.add_guidance"
            )
        g = sparse.coo_matrix(mdata.varp[key])
        names = pd.Index(mdata.var_names)
        links = pd.DataFrame(
            {"source": names[g.row], "target": names[g.col], "weight": g.data.astype(float)}
        )
        links = links[links["source"] != links["target"]]
        if links.empty:
            continue
        m = graph_from_links(links, features)
        total = m if total is None else total + m
    kinds = {m.kind: m for m in data.modalities}
    if auto and "rna" in kinds and "protein" in kinds and "gene_protein" not in keys:
        links = gene_protein_links(kinds["rna"].features, kinds["protein"].features)
        if len(links):
            m = graph_from_links(links, features)
            total = m if total is None else total + m
    return total
