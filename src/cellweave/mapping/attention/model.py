"""``AttentionMapper``: the user-facing multi-view attention mapping model (scvi-tools style).

>>> model = AttentionMapper(adata_sc, adata_sp, cell_type_key="cell_type")  # doctest: +SKIP
>>> model.train(max_epochs=200)                                             # doctest: +SKIP
>>> mapping = model.map()               # the training section: a Mapping    # doctest: +SKIP
>>> other = model.map(adata_sp_new)     # a new section, inference only      # doctest: +SKIP
>>> z = model.get_latent_representation(kind="cells")                       # doctest: +SKIP
>>> model.save("model_dir"); model = AttentionMapper.load("model_dir")  # doctest: +SKIP

The model is described in :mod:`.module`; the views in :mod:`.views`; the reference and its
candidate cells in :mod:`.reference`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from ..._params import jsonable
from ..._utils import to_dense
from ...errors import EmptyDataError, InputError, InvalidOptionError
from ...train import fit
from ...validate import check_adata, check_labels, check_obs_key, check_seed, is_counts
from ..features import shared_genes
from ..result import Mapping
from .module import AttentionModule
from .options import (
    MAX_EPOCHS,
    MIN_EPOCHS,
    MIN_HELD_OUT,
    MODEL,
    MODEL_OPTIONS,
    NO_TYPES_ENTROPY,
    PATIENCE,
    PSEUDO_CELLS,
    PSEUDO_DEPTHS,
    PSEUDO_EPOCHS,
    PSEUDO_SPOTS,
)
from .persist import read_model, reference_arrays, saved_reference, write_model
from .reference import Reference, candidates, principal_axes, pseudo_spots, reference_cells
from .reliability import shrink_fractions, type_recall
from .transport import mix_transport, plan_panel, resolve_transport, transport_target
from .views import SpotViews, fit_views, spot_views

__all__ = ["AttentionMapper", "held_out_spots"]


class _Section:
    """One spatial section prepared for the model: used spots, counts, views, candidates."""

    def __init__(self, adata_sp: AnnData, rows: np.ndarray, counts: np.ndarray, views: SpotViews):
        self.adata, self.rows, self.counts, self.views = adata_sp, rows, counts, views
        self.cand: np.ndarray | None = None
        self.target: np.ndarray | None = None  # the transport plan on cand, when used


class AttentionMapper:
    """Multi-view attention mapping of reference cells onto spots (see :mod:`.module`).

    Parameters
    ----------
    adata_sc
        Reference cells x genes, raw counts (``layer_sc`` to read a layer). Never written to.
    adata_sp
        Spots x genes sharing genes with ``adata_sc``: counts (``layer_sp``), coordinates in
        ``obsm[spatial_key]``, optionally an image in ``uns["spatial"]`` and another modality
        in ``obsm[modality_key]``. Never written to.
    cell_type_key
        ``adata_sc.obs`` column of cell types (two or more): adds the type level of the
        attention; fractions are the attention summed per type either way.
    require_counts
        Refuse spatial values that are not counts (``False``: accept non-negative
        intensities, modelled as continuous counts).
    genes
        Genes to map on (default: every shared gene).
    layer_sc, layer_sp
        Layers to read instead of ``X``.
    warn
        Warn (one line) about spots without counts on the shared genes (``False`` where the
        caller has warned already, as ``map_cells`` does).
    **options
        The model's options (:data:`.options.MODEL_OPTIONS`: ``n_latent``, ``n_hidden``,
        ``top_k``, ``spatial_key``, ``modality_key``, ``histology``, ``ring_weights``,
        ``platform_factor``, ``likelihood``, ``shrink``, ``lambda_cells``, ``transport``,
        ``entropy_reference``: :mod:`.transport`; ``reliability``: :mod:`.reliability`),
        checked before any work.
    """

    def __init__(
        self,
        adata_sc: AnnData,
        adata_sp: AnnData | None,
        *,
        cell_type_key: str | None = None,
        require_counts: bool = True,
        genes: Sequence[str] | None = None,
        layer_sc: str | None = None,
        layer_sp: str | None = None,
        warn: bool = True,
        _saved: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        checked = MODEL.check_options(options)
        unknown = sorted(set(checked) - {o.name for o in MODEL_OPTIONS})
        if unknown:
            raise InvalidOptionError(
                f"{unknown[0]!r} is an option of AttentionMapper.train, not of the model"
            )
        self.options = {**{o.name: o.default for o in MODEL_OPTIONS}, **checked}
        self.options["ring_weights"] = _ring_weights(self.options["ring_weights"])
        self.cell_type_key, self.layer_sc, self.layer_sp = cell_type_key, layer_sc, layer_sp
        self.require_counts = bool(require_counts)
        self.adata_sc = adata_sc
        if _saved is None:
            self.genes = shared_genes(adata_sc, adata_sp, genes=genes)
        else:
            self.genes = pd.Index(_saved["genes"])
        self._setup_reference(_saved)
        self.section: _Section | None = None
        if adata_sp is not None:
            self.stats: dict[str, np.ndarray] = {}
            self.section = self._prepare(adata_sp, warn=warn)
            self.options["entropy"] = _entropy(
                self.options["entropy"], self.section, self.ref.n_types
            )
            self.options = resolve_transport(self.options, self.ref.n_types)
            self._resolve_type_loss()
            self.axes = principal_axes(self.section.views.inputs["panel"], self.ref.panel)
            self.section.cand = self._candidates(self.section)
            dims = self.section.views.dims()
        else:
            self.axes = np.asarray(_saved["axes"], dtype=np.float32)
            self.stats = {k: v for k, v in _saved["arrays"].items() if "/" in k}
            dims = dict(_saved["dims"])
        self.dims = dims
        self.module = AttentionModule(
            dims,
            len(self.genes),
            self.ref.n_types,
            n_latent=self.options["n_latent"],
            n_hidden=self.options["n_hidden"],
            likelihood=self.options["likelihood"],
            platform_factor=self.options["platform_factor"],
            lambda_cells=self.options["lambda_cells"] or 0.0,
            prior=self.options["prior"],
            entropy=self.options["entropy"] or 0.0,
        )
        self.module.set_reference(self.ref.panel, self.ref.profiles, self.ref.codes, self.axes)
        self.is_trained = False
        self.train_params: dict[str, Any] = {}

    # ------------------------------------------------------------------ setup
    def _setup_reference(self, saved: dict[str, Any] | None) -> None:
        X = check_adata(
            self.adata_sc,
            layer=self.layer_sc,
            require_counts=True,
            allow_zero_cells=True,
            name="adata_sc",
        )
        counts = to_dense(X[:, self.adata_sc.var_names.get_indexer(self.genes)], np.float32)
        totals = counts.sum(axis=1)
        self.cell_used = totals > 0
        if not self.cell_used.any():
            raise EmptyDataError(
                f"no reference cell has counts on the {len(self.genes)} shared genes: check "
                "that adata_sc holds expression for those genes"
            )
        codes, types = np.zeros(self.adata_sc.n_obs, dtype=np.int64), ["all"]
        if self.cell_type_key is not None:
            where = f"adata_sc.obs[{self.cell_type_key!r}]"
            labels = check_labels(
                check_obs_key(self.adata_sc, self.cell_type_key, name="adata_sc"),
                where=where,
                fix="pass a cell_type_key column with at least 2 cell types, or none",
            )
            if labels.isna().any():
                raise InputError(
                    f"{where} has {int(labels.isna().sum())} missing label(s): label every "
                    "reference cell or drop the unlabelled ones"
                )
            cats = pd.Categorical(labels.astype(str))
            codes, types = cats.codes.astype(np.int64), [str(c) for c in cats.categories]
            if saved is not None and types != list(saved["types"]):
                raise InputError(
                    f"{where} holds the types {types[:5]}, not those the model was trained on "
                    f"({list(saved['types'])[:5]}): pass the reference the model was trained on"
                )
        self.ref_counts = counts[self.cell_used]
        self.ref: Reference = reference_cells(
            self.ref_counts,
            codes[self.cell_used],
            types,
            shrink=self.options["shrink"],
            profiles=self.options["profiles"],
        )

    def _prepare(self, adata_sp: AnnData, *, warn: bool = True) -> _Section:
        """Counts, used spots and views of a section (checked before any work; ``warn``:
        one line about spots without counts)."""
        missing = self.genes[~self.genes.isin(adata_sp.var_names)]
        if len(missing):
            raise InputError(
                f"adata_sp lacks {len(missing)} of the model's genes (e.g. {list(missing[:3])}): "
                "pass a section measuring the genes the model was trained on"
            )
        X = check_adata(
            adata_sp,
            layer=self.layer_sp,
            require_counts=self.require_counts,
            allow_zero_cells=True,
            name="adata_sp",
        )
        X = X[:, adata_sp.var_names.get_indexer(self.genes)]
        counts = to_dense(X, np.float32)
        if (counts < 0).any():
            raise InputError(
                "adata_sp holds negative values on the shared genes: pass counts (layer_sp=...)"
            )
        totals = counts.sum(axis=1)
        rows = np.flatnonzero(totals > 0)
        if not len(rows):
            raise EmptyDataError(
                f"no spot has counts on the {len(self.genes)} shared genes: check that adata_sp "
                "holds expression for those genes"
            )
        if warn and len(rows) < adata_sp.n_obs:
            warnings.warn(
                f"{adata_sp.n_obs - len(rows)} of {adata_sp.n_obs} spots have no counts on the "
                "shared genes: they are not mapped",
                UserWarning,
                stacklevel=3,
            )
        views = spot_views(
            adata_sp,
            counts[rows],
            rows,
            spatial_key=self.options["spatial_key"],
            modality_key=self.options["modality_key"],
            histology=self.options["histology"],
            ring_weights=self.options["ring_weights"],
        )
        if hasattr(self, "dims"):  # a new section: the trained encoders' widths
            views = fit_views(views, self.dims)
        if not self.stats:  # the training section: its statistics standardize every section
            self.stats = views.statistics()
        return _Section(adata_sp, rows, counts[rows], views.standardize(self.stats))

    def _candidates(self, section: _Section) -> np.ndarray:
        """The section's candidate cells (on the CPU, as the rest of the inference)."""
        return candidates(
            section.views.inputs["panel"], self.ref, self.axes, top_k=self.options["top_k"]
        )

    def _target(self, section: _Section) -> np.ndarray:
        """The section's entropic OT plan on its candidates (:mod:`.transport`), cached."""
        if section.target is None:
            views, eps = section.views, self.options["transport_epsilon"]
            panel = plan_panel(views.inputs, views.mask, self.options["transport_neighbours"])
            section.target = transport_target(
                panel, self.ref.panel, self.axes, section.cand, epsilon=eps
            )
        return section.target

    # ------------------------------------------------------------------ training
    def train(
        self,
        *,
        max_epochs: int | None = None,
        batch_size: int | None = 128,
        lr: float = 1e-2,
        validation: float = 0.0,
        device: str = "auto",
        random_state: int = 0,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        **trainer: Any,
    ) -> AttentionMapper:
        """Train on minibatches of spots (and labelled reference cells) with
        :func:`cellweave.train.fit`: ``device`` and Lightning's ``accelerator``, ``devices``,
        ``strategy``, ``precision`` in ``trainer``; a checkpoint every epoch into
        ``checkpoint_dir`` (``resume=True`` continues a killed run). ``validation`` (e.g.
        :data:`.options.VALIDATION`): the fraction of spots held out of the training rows;
        training stops when their likelihood has not improved for :data:`.options.PATIENCE`
        epochs (the best weights kept; every spot is still mapped), at most ``max_epochs``
        (``None``: :data:`.options.MAX_EPOCHS`); ``validation=0`` (default): ``max_epochs``
        (``None``: :data:`.options.MIN_EPOCHS`) epochs on every spot."""
        if self.section is None:
            raise InputError("this model has no training section: build it with adata_sp")
        given = {"max_epochs": max_epochs, "batch_size": batch_size, "lr": lr}
        given["validation"] = validation
        checked = MODEL.check_options(given)
        check_seed(random_state)
        torch.manual_seed(int(random_state))
        self.module = AttentionModule(
            self.dims,
            len(self.genes),
            self.ref.n_types,
            **{k: self.options[k] for k in _MODULE_KEYS},
            lr=checked["lr"],
        )
        self.module.set_reference(self.ref.panel, self.ref.profiles, self.ref.codes, self.axes)
        labelled = self.cell_type_key is not None and self.options["lambda_cells"] > 0
        s = self.section
        held = held_out_spots(len(s.counts), checked["validation"], int(random_state))
        transport = self.options["entropy_reference"] == "transport" and self.options["entropy"]
        pseudo = self._pseudo_spots(int(random_state)) if labelled else None
        self.module.set_spots(
            s.views.inputs,
            s.views.mask,
            s.counts,
            s.cand,
            labelled=labelled,
            held_out=held,
            target=self._target(s) if transport else None,
            pseudo=pseudo,
        )
        n_rows = self.module.n_spots + self.module.n_cells_labelled
        if checked["max_epochs"] is None:
            fixed = PSEUDO_EPOCHS if pseudo is not None else MIN_EPOCHS
            checked["max_epochs"] = MAX_EPOCHS if len(held) else fixed
        result = fit(
            self.module,
            n_train=n_rows,
            n_val=len(held) or None,
            batch_size=checked["batch_size"],
            max_epochs=checked["max_epochs"],
            early_stopping=bool(len(held)),
            patience=PATIENCE,
            device=device,
            seed=int(random_state),
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            fingerprint={"options": jsonable(self.options), "genes": list(self.genes)},
            **trainer,
        )
        self.is_trained = True
        self.train_params = {
            **checked,
            "random_state": int(random_state),
            "epochs": len(result.epochs),
            "device": result.device,
            "seconds": result.seconds,
        }
        return self

    def _resolve_type_loss(self) -> None:
        """``pseudo_spots=None``: :data:`.options.PSEUDO_SPOTS` when the rarest type's
        reference counts are below :data:`.options.PSEUDO_DEPTHS` median spot depths, else 0;
        ``lambda_cells=None``: 1 with pseudo-spots, else 0 (the likelihood alone)."""
        n = self.options["pseudo_spots"]
        if n is None:
            depth = float(np.median(self.section.counts.sum(axis=1)))
            shallow = self.ref.n_types > 1 and self.ref.type_totals.min() < PSEUDO_DEPTHS * depth
            n = self.options["pseudo_spots"] = PSEUDO_SPOTS if shallow else 0
        if self.options["lambda_cells"] is None:
            self.options["lambda_cells"] = 1.0 if n else 0.0

    def _pseudo_spots(self, seed: int) -> dict[str, np.ndarray] | None:
        """Counts and fractions of the labelled pseudo-spots (option ``pseudo_spots``) and
        the spots' panel statistics (``None``: the reference cells are the labelled rows)."""
        n = self.options["pseudo_spots"]
        if not n or self.section is None:
            return None
        counts, fractions = pseudo_spots(
            self.ref_counts,
            self.ref.codes,
            self.ref.n_types,
            self.section.counts.sum(axis=1),
            n=n,
            max_cells=PSEUDO_CELLS,
            seed=seed,
        )
        mean, sd = self.stats["panel/mean"], self.stats["panel/sd"]
        return {"counts": counts, "fractions": fractions, "mean": mean, "sd": sd}

    # ------------------------------------------------------------------ outputs
    def _require_trained(self) -> None:
        if not self.is_trained:
            raise InputError("the model is not trained: call model.train() first")

    def _infer(self, adata_sp_new: AnnData | None) -> tuple[_Section, dict[str, Any]]:
        self._require_trained()
        if adata_sp_new is None:
            if self.section is None:
                raise InputError("a loaded model maps a section passed to map(adata_sp_new)")
            section = self.section
        else:
            section = self._prepare(adata_sp_new)
            section.cand = self._candidates(section)
        self.module.to("cpu")
        self.module.move_data(torch.device("cpu"))
        out = self.module.infer(
            section.views.inputs,
            section.views.mask,
            section.cand,
            section.counts,
            refine_steps=self.options["refine_steps"],
            refine_penalty=self.options["refine_penalty"],
            refine_cells=self.options["refine_cells"],
        )
        if self.options["reliability"] and self.ref.n_types > 1:
            codes = self.ref.codes[section.cand]
            out["a"], out["pi"] = shrink_fractions(out["a"], out["pi"], codes, self._recall)
        if self.options["transport"]:
            out["a"] = mix_transport(out["a"], self._target(section), self.options["transport"])
        return section, out

    @functools.cached_property
    def _recall(self) -> np.ndarray:
        """Leave-one-out recall of every reference type (``reliability``): it depends on the
        reference only, so it is computed once, not on every inference."""
        ref = self.ref
        return type_recall(self.ref_counts, ref.codes, ref.n_types, pooled=ref.pooled)

    def map(self, adata_sp_new: AnnData | None = None) -> Mapping:
        """The :class:`~cellweave.mapping.result.Mapping` of the training section, or of
        ``adata_sp_new`` by inference only (no retraining): the plan holds the attention
        ``a_sc`` of every spot over its candidate cells (columns sum to 1), so
        ``cell_type_fractions`` gives the model's fractions and ``predict`` /
        ``project_genes`` the attention over the reference's full profiles. Its
        ``outputs`` hold ``latent`` and ``view_weights`` (spots without counts: NaN)."""
        section, out = self._infer(adata_sp_new)
        n_cells, n_spots = self.adata_sc.n_obs, section.adata.n_obs
        used = np.flatnonzero(self.cell_used)
        k = section.cand.shape[1]
        plan = sparse.csr_matrix(
            (
                out["a"].ravel().astype(np.float64),
                (used[section.cand.ravel()], np.repeat(section.rows, k)),
            ),
            shape=(n_cells, n_spots),
        )
        plan.eliminate_zeros()
        genes_idx = self.adata_sc.var_names.get_indexer(self.genes)
        X = check_adata(self.adata_sc, layer=self.layer_sc, allow_zero_cells=True, name="adata_sc")
        cell_totals = np.asarray(X[:, genes_idx].sum(axis=1), dtype=np.float64).ravel()
        spot_totals = np.zeros(n_spots)
        spot_totals[section.rows] = section.counts.sum(axis=1)
        mapping = Mapping(
            plan=plan,
            cell_names=self.adata_sc.obs_names,
            spot_names=section.adata.obs_names,
            genes=self.genes,
            cell_totals=cell_totals,
            spot_totals=spot_totals,
            method="attention",
            params={**jsonable(self.options), "train": jsonable(self.train_params)},
        )
        mapping.outputs = {
            "latent": _full(out["latent"], section.rows, n_spots),
            "view_weights": self._view_frame(out["view_weights"], section),
            "cell_latent": self.get_latent_representation(kind="cells"),
        }
        return mapping

    def _view_frame(self, weights: np.ndarray, section: _Section) -> pd.DataFrame:
        values = _full(weights, section.rows, section.adata.n_obs)
        return pd.DataFrame(values, index=section.adata.obs_names, columns=self.module.views)

    def get_latent_representation(
        self, adata: AnnData | None = None, *, kind: str = "spots"
    ) -> np.ndarray:
        """Latent of the spots of ``adata`` (default: the training section) or, with
        ``kind="cells"``, of the reference cells (cells without counts: NaN); one space."""
        if kind not in ("cells", "spots"):
            raise InvalidOptionError(f"kind={kind!r}: pass 'cells' or 'spots'")
        self._require_trained()
        if kind == "cells":
            return _full(
                self.module.cell_latent(), np.flatnonzero(self.cell_used), len(self.cell_used)
            )
        section, out = self._infer(adata)
        return _full(out["latent"], section.rows, section.adata.n_obs)

    def view_weights(self, adata: AnnData | None = None) -> pd.DataFrame:
        """Per-spot weights of the views (spots x views used; rows sum to 1, 0 where a view
        is absent)."""
        section, out = self._infer(adata)
        return self._view_frame(out["view_weights"], section)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, overwrite: bool = False, reference: bool = True) -> Path:
        """Write the model to the folder ``path`` (``model.json``, ``arrays.npz``,
        ``weights.pt``; atomic); ``reference``: with the reference cells' counts on the
        model's genes, names and types, so that :meth:`load` needs no reference
        (:mod:`.persist`)."""
        self._require_trained()
        meta = {
            "options": jsonable(self.options),
            "cell_type_key": self.cell_type_key,
            "layer_sc": self.layer_sc,
            "layer_sp": self.layer_sp,
            "require_counts": self.require_counts,
            "genes": list(self.genes),
            "types": list(self.ref.types),
            "dims": self.dims,
            "train_params": jsonable(self.train_params),
        }
        state = self.module.state_dict()
        arrays = {"axes": self.axes, **self.stats}
        if reference:
            keys = {"layer": self.layer_sc, "cell_type_key": self.cell_type_key}
            arrays.update(reference_arrays(self.adata_sc, self.genes, self.ref.types, **keys))
        return write_model(path, meta, arrays, state, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, adata_sc: AnnData | None = None) -> AttentionMapper:
        """A model saved with :meth:`save`, on its reference ``adata_sc`` (``None``: the
        reference cells saved with the model); it maps new sections with :meth:`map`
        (``adata_sp_new``)."""
        meta, arrays, state = read_model(path)
        layer_sc = meta["layer_sc"]
        if adata_sc is None:
            adata_sc, layer_sc = saved_reference(path, meta, arrays), None
        saved = {**meta, "axes": arrays["axes"], "arrays": arrays}
        options = dict(meta["options"])
        options["ring_weights"] = tuple(options["ring_weights"])
        model = cls(
            adata_sc,
            None,
            cell_type_key=meta["cell_type_key"],
            layer_sc=layer_sc,
            layer_sp=meta["layer_sp"],
            require_counts=meta["require_counts"],
            _saved=saved,
            **options,
        )
        model.module.load_state_dict(state)
        model.is_trained = True
        model.train_params = dict(meta.get("train_params", {}))
        return model


_MODULE_KEYS = (
    "n_latent",
    "n_hidden",
    "likelihood",
    "platform_factor",
    "lambda_cells",
    "prior",
    "entropy",
)


def held_out_spots(n_spots: int, fraction: float, seed: int) -> np.ndarray:
    """Spots held out for validation: ``fraction`` of ``n_spots`` at random (none when that
    is fewer than :data:`.options.MIN_HELD_OUT` spots)."""
    n = round(n_spots * float(fraction))
    if n < MIN_HELD_OUT or n >= n_spots:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_spots, size=n, replace=False))


def _full(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``values`` of ``rows`` placed in ``n`` rows (the others NaN)."""
    out = np.full((n, values.shape[1]), np.nan, dtype=np.float64)
    out[rows] = values
    return out


def _entropy(value: float | None, section: _Section, n_types: int) -> float:
    """``entropy=None``: the maximum-entropy prior :data:`~.options.NO_TYPES_ENTROPY` for
    values that are not counts (intensities, accepted with ``require_counts=False``) mapped
    without cell types, else 0."""
    if value is not None:
        return float(value)
    return NO_TYPES_ENTROPY if n_types < 2 and not is_counts(section.counts) else 0.0


def _ring_weights(value: Any) -> tuple[float, ...]:
    try:
        weights = tuple(float(w) for w in value)
    except (TypeError, ValueError):
        weights = ()
    if not weights or not all(np.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise InvalidOptionError(
            f"ring_weights={value!r}: pass non-negative weights, one per ring order, e.g. "
            "(1.0, 0.5)"
        )
    return weights
