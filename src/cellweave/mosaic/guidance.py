"""Guidance graphs: prior links between features of different modalities, and the graph
encoder that turns them into the feature embeddings ``V`` of the decoders.

Builders (all return a links table ``source, target, weight, sign``, one row per link):

* :func:`gene_peak_links` - a gene and a peak are linked when the peak overlaps the gene body
  extended by ``window`` bp on both sides; the weight decays with the distance ``d`` from the
  gene body as ``((d + 1000) / 1000) ** -0.75`` (GLUE's ``dist_power_decay``). Genes come from a
  GTF/BED file or a table with ``chrom, start, end``; peaks from a BED file, a table, or names
  like ``chr1_4914570_4914685`` / ``chr1:4914570-4914685``.
* :func:`gene_protein_links` - a protein and a gene are linked when their names match after
  removing barcodes and prefixes, directly or through :data:`CD_ALIASES` or a user mapping
  (defined in the core module :mod:`cellweave.links`, shared with ``cellweave.align``;
  re-exported here).
* :func:`graph_from_links` - any links table -> a symmetric sparse matrix over a feature index
  (what :func:`add_guidance` stores in ``mdata.varp``).

The encoder (:class:`GraphEncoder`) keeps a free embedding per feature, propagates it once
over the symmetrically normalised signed adjacency with self-loops (a one-layer GCN, like
GLUE's), and samples ``V`` from a Gaussian around it. Its loss (:meth:`GraphEncoder.loss`)
reconstructs the graph: for sampled edges ``(i, j)`` with sign ``s``, ``-log sigmoid(s V_i.V_j)``
and for random non-edges ``-log sigmoid(-V_i.V_j)``; it is part of every training step.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from ..errors import (
    FileFormatError,
    InputError,
    MissingKeyError,
    NonFiniteError,
    NoSharedFeaturesError,
)
from ..links import CD_ALIASES, empty_links, gene_protein_links
from ..nn import take_rows

__all__ = [
    "CD_ALIASES",
    "GraphEncoder",
    "add_guidance",
    "gene_peak_links",
    "gene_protein_links",
    "graph_from_links",
    "peaks_from_names",
    "read_bed",
    "read_gtf",
]


_PEAK_NAME = re.compile(r"^(?P<chrom>[^:_\-]+)[:_\-](?P<start>\d+)[:_\-](?P<end>\d+)$")


# ------------------------------------------------------------------------------ readers


def read_bed(path: str | Path) -> pd.DataFrame:
    """Intervals of a BED file: ``chrom, start, end`` (and ``name`` when the file has one),
    indexed by ``name`` when present, else by ``chrom_start_end``."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"BED file {path} does not exist: pass an existing file")
    try:
        table = pd.read_csv(path, sep="\t", header=None, comment="#", dtype={0: str})
    except Exception as err:
        raise FileFormatError(f"could not read {path} as BED ({err}): check the file") from err
    if table.shape[1] < 3:
        raise FileFormatError(f"{path} has fewer than 3 columns: a BED file needs chrom/start/end")
    out = pd.DataFrame(
        {"chrom": table[0].astype(str), "start": table[1].astype(int), "end": table[2].astype(int)}
    )
    if table.shape[1] >= 4:
        out.index = pd.Index(table[3].astype(str), name="name")
    else:
        out.index = out["chrom"] + "_" + out["start"].astype(str) + "_" + out["end"].astype(str)
    return out


def read_gtf(
    path: str | Path, *, feature: str = "gene", name_attribute: str = "gene_name"
) -> pd.DataFrame:
    """Gene bodies from a GTF/GFF file: ``chrom, start, end, strand`` indexed by
    ``name_attribute`` (first occurrence kept)."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"GTF file {path} does not exist: pass an existing file")
    try:
        table = pd.read_csv(
            path, sep="\t", header=None, comment="#", dtype={0: str}, usecols=[0, 2, 3, 4, 6, 8]
        )
    except Exception as err:
        raise FileFormatError(f"could not read {path} as GTF ({err}): check the file") from err
    table = table[table[2] == feature]
    pattern = re.compile(rf'{re.escape(name_attribute)}[ =]"?([^";]+)"?')
    names = table[8].astype(str).map(lambda s: m.group(1) if (m := pattern.search(s)) else None)
    keep = names.notna().to_numpy()
    if not keep.any():
        raise FileFormatError(
            f"{path} has no {feature!r} rows with attribute {name_attribute!r}: pass "
            "feature=/name_attribute= matching the file"
        )
    out = pd.DataFrame(
        {
            "chrom": table[0].astype(str).to_numpy()[keep],
            "start": table[3].astype(int).to_numpy()[keep] - 1,  # GTF is 1-based inclusive
            "end": table[4].astype(int).to_numpy()[keep],
            "strand": table[6].astype(str).to_numpy()[keep],
        },
        index=pd.Index(names[keep].astype(str), name="gene"),
    )
    return out[~out.index.duplicated()]


def peaks_from_names(names: Sequence[str]) -> pd.DataFrame:
    """``chrom, start, end`` parsed from names like ``chr1_100_200`` or ``chr1:100-200``."""
    names = pd.Index(list(map(str, names)))
    parsed = names.str.extract(_PEAK_NAME)
    bad = parsed["chrom"].isna().to_numpy()
    if bad.all():
        raise InputError(
            f"peak names like {names[0]!r} do not read as chrom_start_end: pass a BED file or a "
            "table with chrom/start/end instead"
        )
    out = pd.DataFrame(
        {
            "chrom": parsed["chrom"].to_numpy(),
            "start": pd.to_numeric(parsed["start"]).to_numpy(),
            "end": pd.to_numeric(parsed["end"]).to_numpy(),
        },
        index=names,
    )
    return out[~bad]


def _intervals(x: Any, what: str) -> pd.DataFrame:
    if isinstance(x, str | Path):
        path = Path(x)
        if path.suffix in (".gtf", ".gff", ".gff3") or path.name.endswith((".gtf.gz", ".gff.gz")):
            return read_gtf(path)
        return read_bed(path)
    if isinstance(x, pd.DataFrame):
        missing = [c for c in ("chrom", "start", "end") if c not in x.columns]
        if missing:
            raise MissingKeyError(
                f"the {what} table lacks column(s) {', '.join(missing)}: give chrom/start/end "
                "(e.g. mdata['rna'].var[['chrom', 'start', 'end']])"
            )
        return x[["chrom", "start", "end"]].dropna().astype({"start": int, "end": int})
    return peaks_from_names(x)


# ------------------------------------------------------------------------------ builders


def gene_peak_links(
    genes: Any, peaks: Any, *, window: int = 50_000, decay: bool = True
) -> pd.DataFrame:
    """Gene–peak links by genomic window.

    Parameters
    ----------
    genes
        Gene bodies: a GTF/BED path, or a table with ``chrom, start, end`` indexed by gene.
    peaks
        Peaks: a BED path, a table with ``chrom, start, end`` indexed by peak, or peak names
        (``chr1_100_200`` / ``chr1:100-200``).
    window
        A peak overlapping the gene body extended by ``window`` bp on each side is linked.
    decay
        Weight ``((d + 1000) / 1000) ** -0.75`` by the distance ``d`` (bp) between peak and gene
        body (``False``: weight 1).

    Returns
    -------
    Links table ``source`` (gene), ``target`` (peak), ``weight``, ``sign`` (+1).
    """
    g = _intervals(genes, "gene")
    p = _intervals(peaks, "peak")
    if int(window) < 0:
        raise InputError(f"window={window} is negative: pass a distance in bp >= 0")
    parts = []
    for chrom, gg in g.groupby("chrom", sort=False):
        pp = p[p["chrom"] == chrom]
        if pp.empty:
            continue
        order = np.argsort(pp["start"].to_numpy(), kind="stable")
        starts = pp["start"].to_numpy()[order]
        ends = pp["end"].to_numpy()[order]
        width = int((ends - starts).max())
        lo = np.searchsorted(starts, gg["start"].to_numpy() - window - width, "left")
        hi = np.searchsorted(starts, gg["end"].to_numpy() + window, "right")
        counts = hi - lo
        gene_rep = np.repeat(np.arange(len(gg)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        cand = np.repeat(lo, counts) + offsets
        gs, ge = gg["start"].to_numpy()[gene_rep], gg["end"].to_numpy()[gene_rep]
        ps, pe = starts[cand], ends[cand]
        dist = np.maximum(0, np.maximum(ps - ge, gs - pe))
        keep = dist <= window
        parts.append(
            pd.DataFrame(
                {
                    "source": gg.index.to_numpy()[gene_rep[keep]],
                    "target": pp.index.to_numpy()[order][cand[keep]],
                    "weight": ((dist[keep] + 1000.0) / 1000.0) ** -0.75 if decay else 1.0,
                    "sign": 1,
                }
            )
        )
    if not parts:
        return empty_links()
    return pd.concat(parts, ignore_index=True)


def graph_from_links(links: pd.DataFrame, features: Sequence[str]) -> sparse.csr_matrix:
    """Symmetric ``(n, n)`` CSR over ``features`` with ``sign * weight`` at each link.

    Links naming features outside ``features`` are dropped with a warning; when none is
    left, :class:`NoSharedFeaturesError` is raised.
    """
    missing = [c for c in ("source", "target") if c not in links.columns]
    if missing:
        raise MissingKeyError(
            f"the links table lacks column(s) {', '.join(missing)}: give source/target "
            "(and optionally weight, sign)"
        )
    index = pd.Index(list(map(str, features)))
    i = index.get_indexer(links["source"].astype(str))
    j = index.get_indexer(links["target"].astype(str))
    ok = (i >= 0) & (j >= 0)
    if len(links) and not ok.any():
        example = links["source"].iloc[0] if i[0] < 0 else links["target"].iloc[0]
        raise NoSharedFeaturesError(
            f"no link of the guidance graph joins two features of the data (e.g. {example!r} "
            "is not a feature): build the graph on the data's var_names"
        )
    if not ok.all():
        warnings.warn(
            f"{int((~ok).sum())} of {len(links)} guidance links name features absent from the "
            "data; they are ignored",
            stacklevel=2,
        )
    w = links["weight"].to_numpy(float) if "weight" in links else np.ones(len(links))
    s = links["sign"].to_numpy(float) if "sign" in links else np.ones(len(links))
    _check_weights(w, s, signed="sign" not in links)
    v = (w * s)[ok]
    n = len(index)
    m = sparse.coo_matrix((v, (i[ok], j[ok])), shape=(n, n)).tocsr()
    m = m + m.T - sparse.diags(m.diagonal())
    return sparse.csr_matrix(m, dtype=np.float32)


def _check_weights(weight: np.ndarray, sign: np.ndarray, *, signed: bool) -> None:
    """Refuse NaN/inf weights or signs, and negative weights beside a ``sign`` column
    (``signed``: no sign column, the weight carries it, as in a graph stored in ``varp``);
    links are drawn with probability ``|weight|``, so a bad one would end training."""
    for name, values in (("weight", weight), ("sign", sign)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise NonFiniteError(
                f"the guidance graph has {int(bad.sum())} NaN or infinite link {name}(s) "
                f"(e.g. {values[bad][0]}): drop those links or give finite {name}s"
            )
    if len(weight) and not np.any(weight * sign != 0):
        raise InputError(
            f"every one of the {len(weight)} guidance links has weight 0: give positive "
            "weights, or pass graph_key=None to train without a guidance graph"
        )
    if not signed and (weight < 0).any():
        raise InputError(
            f"the guidance graph has {int((weight < 0).sum())} negative link weight(s) "
            f"(e.g. {weight[weight < 0][0]:g}): give weights >= 0 and the direction in the "
            "sign column (+1 or -1)"
        )


def add_guidance(mdata: Any, links: pd.DataFrame, *, key: str = "guidance") -> None:
    """Store ``links`` as ``mdata.varp[key]`` (symmetric, over ``mdata.var_names``)."""
    mdata.varp[key] = graph_from_links(links, mdata.var_names)


# ------------------------------------------------------------------------------ encoder


def _normalized(adjacency: sparse.csr_matrix) -> sparse.csr_matrix:
    """``D^-1/2 (A + I) D^-1/2`` with degrees of ``|A| + I`` (signs kept)."""
    n = adjacency.shape[0]
    a = sparse.csr_matrix(adjacency, dtype=np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    a = a + sparse.identity(n, format="csr")
    deg = np.asarray(abs(a).sum(axis=1)).ravel()
    d = sparse.diags(1.0 / np.sqrt(deg))
    return sparse.csr_matrix(d @ a @ d)


def _torch_sparse(m: sparse.csr_matrix) -> torch.Tensor:
    coo = m.tocoo()
    index = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
    return torch.sparse_coo_tensor(
        index, torch.as_tensor(coo.data, dtype=torch.float32), coo.shape, check_invariants=False
    ).coalesce()


def _sparse_from(index: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """The coalesced ``(n, n)`` sparse tensor of :func:`_torch_sparse`'s indices and values."""
    return torch.sparse_coo_tensor(index, values, (n, n), is_coalesced=True, check_invariants=False)


class GraphEncoder(nn.Module):
    """Feature embeddings ``V`` (``n_features x n_dims``) from a guidance graph.

    Parameters
    ----------
    n_features, n_dims
        Number of features (graph nodes) and embedding width (the latent dimension).
    adjacency
        Symmetric signed ``(n_features, n_features)`` graph, or ``None`` (free embeddings and
        no graph loss).
    variational
        Sample ``V`` around its mean during training (GLUE's variational graph encoder).
    """

    def __init__(
        self,
        n_features: int,
        n_dims: int,
        adjacency: sparse.csr_matrix | None = None,
        *,
        variational: bool = True,
    ) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(n_features, n_dims) * 0.1)
        self.log_std = nn.Parameter(torch.full((n_features, n_dims), -3.0))
        self.variational = bool(variational)
        self.has_graph = adjacency is not None and adjacency.nnz > 0
        if self.has_graph:
            adj = sparse.csr_matrix(adjacency, dtype=np.float32)
            # dense buffers (indices, values) rather than one sparse tensor: DDP broadcasts
            # buffers and has no support for sparse ones; mean() rebuilds it on the device
            propagate = _torch_sparse(_normalized(adj))
            self.register_buffer("propagate_index", propagate.indices().clone(), False)
            self.register_buffer("propagate_values", propagate.values().clone(), False)
            edges = sparse.triu(adj, k=1).tocoo()
            weight = np.abs(edges.data).astype(np.float64)
            self.register_buffer("src", torch.as_tensor(edges.row, dtype=torch.long), False)
            self.register_buffer("dst", torch.as_tensor(edges.col, dtype=torch.long), False)
            self.register_buffer(
                "sign", torch.as_tensor(np.sign(edges.data), dtype=torch.float32), False
            )
            self.register_buffer(
                "edge_prob", torch.as_tensor(weight / weight.sum(), dtype=torch.float32), False
            )
            linked = np.unique(np.concatenate([edges.row, edges.col]))
            self.register_buffer("linked", torch.as_tensor(linked, dtype=torch.long), False)
        self.n_features = int(n_features)

    @property
    def n_edges(self) -> int:
        return int(self.src.numel()) if self.has_graph else 0

    def mean(self) -> torch.Tensor:
        """Mean embeddings (``n_features x n_dims``)."""
        if not self.has_graph:
            return self.embedding
        return torch.sparse.mm(self.propagate, self.embedding)

    @property
    def propagate(self) -> torch.Tensor:
        """The normalised adjacency ``D^-1/2 (A + I) D^-1/2`` as a sparse tensor on the
        module's device (built from the dense index and value buffers)."""
        return _sparse_from(self.propagate_index, self.propagate_values, self.n_features)

    def forward(self, mean: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings: a sample around :meth:`mean` in training (variational), else the mean
        (``mean``: :meth:`mean` already computed)."""
        mu = self.mean() if mean is None else mean
        if self.training and self.variational:
            return mu + torch.randn_like(mu) * torch.exp(self.log_std)
        return mu

    def kl(self, mean: torch.Tensor | None = None) -> torch.Tensor:
        """KL of the embedding posterior from ``N(0, I)``, averaged over features (``mean``:
        :meth:`mean` already computed)."""
        if not self.variational:
            return torch.zeros((), device=self.embedding.device)
        mu = self.mean() if mean is None else mean
        log_std = self.log_std
        return 0.5 * (mu**2 + torch.exp(2 * log_std) - 1 - 2 * log_std).sum(1).mean()

    def loss(self, v: torch.Tensor, *, n_samples: int = 2048, negatives: int = 1) -> torch.Tensor:
        """Graph reconstruction loss (mean binary cross-entropy) on ``n_samples`` edges drawn
        proportionally to their weight and ``negatives`` random pairs per edge.

        Zero when there is no graph."""
        if not self.has_graph:
            return torch.zeros((), device=v.device)
        pick = torch.multinomial(self.edge_prob, n_samples, replacement=True)
        src, dst, sign = self.src[pick], self.dst[pick], self.sign[pick]
        pos = (take_rows(v, src) * take_rows(v, dst)).sum(1)  # fixed-order backward
        if negatives <= 0:
            return F.softplus(-sign * pos).mean()
        neg_src = src.repeat(negatives)
        neg_dst = self.linked[
            torch.randint(0, self.linked.numel(), (neg_src.numel(),), device=v.device)
        ]
        neg = (take_rows(v, neg_src) * take_rows(v, neg_dst)).sum(1)
        return F.softplus(-sign * pos).mean() + F.softplus(neg).mean()
