"""Mapping query batches onto a trained mosaic model (scArches-style architecture surgery).

:func:`load_query_data` builds a model for new batches from a trained reference
(a :class:`~.model.MosaicModel` or a folder written by ``model.save``):

* the query's modalities may be any subset of the reference's (matched by name); each is
  reindexed to the reference's features by name: missing features are zero-filled and
  masked out of the query batches' likelihood (their decoder bias is fixed at -30, so they
  carry no probability mass); a modality sharing no feature is an error;
* the reference weights are copied; the batch-specific parameters (every decoder's per-batch
  scale, bias and dispersion rows, the discriminator's output rows, the batch columns of
  the encoders with ``encode_batch``) get rows for the query batches (started at the mean of
  the reference rows), and a per-batch shift of each encoder's input (zero for the
  reference batches) lets the query's inputs move onto the reference's;
* by default only those new entries learn (the others are frozen: their gradients are
  zero, so Adam leaves them bit-equal); ``unfrozen=True`` fine-tunes everything;
* :func:`train_query` trains on the query cells alone through :func:`cellweave.train.fit`
  (checkpoints, resume, early stopping as ``model.train``); the batch-mixing terms
  (adversary, MMD) need the reference cells and are off, the frozen mixture prior keeps the
  query on the reference's clusters.

Labels for the query: the classifier head of a semi-supervised reference
(``model.predict_labels``) and :func:`knn_labels`, a k-nearest-neighbour vote on the latent
among the reference's labelled cells (kept with the saved model, at most
:data:`MAX_REFERENCE_CELLS`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from ..errors import InputError, MissingKeyError, NoSharedFeaturesError
from .data import ModalityData, MosaicData
from .kinds import get_kind
from .persist import load_state, read_model
from .represent import Representation
from .surgery import add_input_shift, freeze, mask_features, merge_state, start_from_measured

__all__ = [
    "MAX_REFERENCE_CELLS",
    "Reference",
    "knn_labels",
    "load_query_data",
    "load_saved_query",
    "reference_cells",
    "train_query",
    "validation_losses",
    "validation_noise",
]

#: Labelled reference cells kept (a seeded subsample above it) for :func:`knn_labels`.
MAX_REFERENCE_CELLS = 50_000


@dataclass
class Reference:
    """What a query model needs of its reference: parameters, fitted inputs, weights and
    (optionally) the latent and label codes of labelled reference cells."""

    init_params: dict[str, Any]
    fitted: dict[str, Any]
    batch_names: list[str]
    label_classes: list[str]
    graph: Any
    state: Mapping[str, torch.Tensor]
    latent: np.ndarray | None = None
    labels: np.ndarray | None = None
    n_reference_batches: int | None = None

    @classmethod
    def of(cls, reference: Any) -> Reference:
        """From a trained :class:`~.model.MosaicModel` or a saved model's folder."""
        if isinstance(reference, (str, Path)):
            saved = read_model(reference, strict=True)
            meta = saved["meta"]
            ref = saved.get("reference") or {}
            return cls(
                init_params=dict(meta["init_params"]),
                fitted=saved["fitted"],
                batch_names=list(saved["batch_names"]),
                label_classes=list(saved["label_classes"]),
                graph=saved["graph"],
                state=saved["state"],
                latent=ref.get("latent"),
                labels=ref.get("labels"),
                n_reference_batches=(meta.get("query") or {}).get("reference_batches"),
            )
        if not getattr(reference, "is_trained", False):
            raise InputError("the reference model is not trained: call reference.train() first")
        latent, labels = reference_cells(reference)
        return cls(
            init_params=dict(reference.init_params),
            fitted=reference.data.fitted_state(),
            batch_names=list(reference.data.batch_names),
            label_classes=list(reference.data.label_classes),
            graph=reference.graph,
            state={k: v.detach().clone() for k, v in reference.module.state_dict().items()},
            latent=latent,
            labels=labels,
        )


def reference_cells(model: Any, *, seed: int = 0) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Latent (float32) and label codes of a trained model's labelled cells (at most
    :data:`MAX_REFERENCE_CELLS`, a seeded subsample), or the ones it carries from its own
    reference (a query model); ``(None, None)`` without labels."""
    carried = getattr(model, "reference_latent", None)
    if carried is not None:
        return carried
    codes = np.asarray(model.data.label_codes)
    cells = np.flatnonzero(codes >= 0)
    if cells.size == 0:
        return None, None
    if cells.size > MAX_REFERENCE_CELLS:
        rng = np.random.default_rng(seed)
        cells = np.sort(rng.choice(cells, MAX_REFERENCE_CELLS, replace=False))
    return model.get_latent_representation(cells=cells), codes[cells].astype(np.int64)


# ---------------------------------------------------------------------- the query's data
def _reindex(
    adata: Any, features: pd.Index, name: str, layer_names: tuple[str, ...]
) -> tuple[Any, np.ndarray]:
    """``adata`` with the reference's ``features`` as columns (missing ones zero) and the
    mask of the features it measured."""
    import anndata as ad

    pos = features.get_indexer(pd.Index(adata.var_names))
    observed = np.zeros(len(features), dtype=bool)
    observed[pos[pos >= 0]] = True
    if not observed.any():
        raise NoSharedFeaturesError(
            f"query modality {name!r} shares no feature with the reference's {len(features)} "
            f"(e.g. {features[0]!r}): name its var_names as the reference's, or drop it"
        )
    X = sparse.coo_matrix(adata.X)
    keep = pos[X.col] >= 0
    X = sparse.csr_matrix(
        (X.data[keep], (X.row[keep], pos[X.col[keep]])), shape=(adata.n_obs, len(features))
    )
    layers = {}
    for key in (k for k in layer_names if k in adata.layers):
        L = sparse.coo_matrix(adata.layers[key])
        k = pos[L.col] >= 0
        layers[key] = sparse.csr_matrix(
            (L.data[k], (L.row[k], pos[L.col[k]])), shape=(adata.n_obs, len(features))
        )
    out = ad.AnnData(X=X, obs=pd.DataFrame(index=adata.obs_names), layers=layers)
    out.var_names = features
    return out, observed


def _placeholder(info: Mapping[str, Any], name: str, obs_names: pd.Index) -> ModalityData:
    """A reference modality the query did not measure: no cell present."""
    n, features = len(obs_names), pd.Index(info["features"])
    rep = Representation.from_state(
        info["representation"], info["arrays"], n_comps=info.get("n_comps") or 50
    )
    empty = sparse.csr_matrix((n, len(features)), dtype=np.float32)
    return ModalityData(
        name=name,
        kind=info["kind"],
        likelihood=info["likelihood"],
        features=features,
        feature_index=np.arange(len(features), dtype=np.int64),
        present=np.zeros(n, dtype=bool),
        rows=np.full(n, -1, dtype=np.int64),
        library=np.zeros(n, dtype=np.float32),
        representation=rep,
        counts=empty,
        inputs=np.zeros((n, rep.n_dims(len(features))), dtype=np.float32),
        layers={k: empty.copy() for k in get_kind(info["kind"]).layers},
    )


def query_data(
    mdata: Any, reference: Reference, *, batch_key: str, query_batches: list[str] | None = None
) -> tuple[MosaicData, dict[str, np.ndarray]]:
    """The query's arrays in the reference's modalities and features, its batches after the
    reference's; and per modality the mask of the reference features it measured."""
    import mudata as md

    if getattr(mdata, "isbacked", False):
        mdata = mdata.to_memory()
    if not hasattr(mdata, "mod"):
        raise InputError(
            f"the query must be a MuData, got {type(mdata).__name__}: wrap an AnnData as "
            "mudata.MuData({'rna': adata})"
        )
    ref_mods = list(reference.fitted)
    unknown = [m for m in mdata.mod if m not in ref_mods]
    if unknown:
        raise InputError(
            f"query modality {unknown[0]!r} is not in the reference model (its modalities: "
            f"{', '.join(ref_mods)}): rename it or drop it"
        )
    n_ref = reference.n_reference_batches or len(reference.batch_names)
    batches = _query_batches(mdata, batch_key, reference.batch_names[:n_ref], query_batches)
    mods, observed = {}, {}
    for name in mdata.mod:
        features = pd.Index(reference.fitted[name]["features"])
        layer_names = tuple(get_kind(reference.fitted[name]["kind"]).layers)
        mods[name], observed[name] = _reindex(mdata.mod[name], features, name, layer_names)
    with md.set_options(pull_on_update=False):
        padded = md.MuData(mods)
        if not padded.obs_names.equals(mdata.obs_names):  # the query's cell order
            padded = padded[mdata.obs_names].copy()
    padded.obs[batch_key] = mdata.obs[batch_key].reindex(padded.obs_names).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        data = MosaicData.from_mudata(
            padded,
            batch_key=batch_key,
            modalities=list(mods),
            batch_names=[*reference.batch_names[:n_ref], *batches],
            label_classes=reference.label_classes,
            fitted={m: reference.fitted[m] for m in mods},
        )
    built = {m.name: m for m in data.modalities}
    data.modalities = [
        built[m] if m in built else _placeholder(reference.fitted[m], m, data.obs_names)
        for m in ref_mods
    ]
    return data, observed


def _query_batches(
    mdata: Any, batch_key: str, reference: list[str], given: list[str] | None
) -> list[str]:
    """The query's batch names: none may be a reference batch."""
    if batch_key not in mdata.obs.columns:
        raise MissingKeyError(
            f"the query has no obs column {batch_key!r} (columns: "
            f"{', '.join(map(str, mdata.obs.columns[:8])) or 'none'}): pass its batch column"
        )
    col = mdata.obs[batch_key]
    if col.isna().any():
        raise InputError(f"query obs[{batch_key!r}] has missing batches: give every cell one")
    names = sorted(set(col.astype(str)))
    if given is not None:  # a saved query model: its own batches
        extra = sorted(set(names) - set(given))
        if extra:
            raise InputError(
                f"batch {extra[0]!r} is not a batch of this query model (its batches: "
                f"{', '.join(given)}): map it with load_query_data on the reference"
            )
        return list(given)
    clash = sorted(set(names) & set(reference))
    if clash:
        raise InputError(
            f"query batch {clash[0]!r} is also a reference batch: rename the query's batches "
            f"(e.g. '{clash[0]}_query'); a reference batch is not mapped again"
        )
    return names


# ---------------------------------------------------------------------- the query model
def _wrap(mdata: Any, reference: Reference) -> Any:
    """A one-modality AnnData query of a one-modality reference, as a MuData."""
    import anndata as ad
    import mudata as md

    if not isinstance(mdata, ad.AnnData):
        return mdata
    mods = list(reference.fitted)
    if len(mods) != 1:
        raise InputError(
            f"the reference has modalities {', '.join(mods)}: pass the query as a MuData "
            "with modalities of those names"
        )
    with md.set_options(pull_on_update=False):
        out = md.MuData({mods[0]: mdata})
    out.obs = mdata.obs.copy()
    return out


def _build(cls: type, mdata: Any, reference: Reference, data: MosaicData, batch_key: str):
    """A model object of class ``cls`` over the query's ``data`` with the reference's
    architecture (weights not yet copied)."""
    params = dict(reference.init_params)
    params.update(batch_key=batch_key, label_key=None, modalities=list(reference.fitted))
    params.pop("graph_key", None)
    params["modality"] = None
    saved = {"data": data, "graph": reference.graph, "label_classes": reference.label_classes}
    with warnings.catch_warnings():  # modalities the query lacks: empty means, replaced below
        warnings.simplefilter("ignore", RuntimeWarning)
        model = cls(mdata, _saved=saved, **params)
    model.init_params = dict(reference.init_params, batch_key=batch_key)
    model.reference_latent = (
        (reference.latent, reference.labels) if reference.latent is not None else None
    )
    return model


def _observed_by_index(data: MosaicData, observed: Mapping[str, np.ndarray]):
    return {data.names.index(name): mask for name, mask in observed.items()}


def load_query_data(
    cls: type, reference: Any, mdata: Any, *, batch_key: str = "batch", unfrozen: bool = False
):
    """A model of the query batches of ``mdata`` on a trained reference (see the module
    docstring); train it with :func:`train_query`.

    Parameters
    ----------
    reference
        A trained :class:`~.model.MosaicModel` or the folder of a saved one.
    mdata
        The query: a MuData whose modalities (a subset of the reference's, by name) hold the
        cells that measured them, raw counts; an AnnData for a one-modality reference.
    batch_key
        ``mdata.obs`` column of the query's batches (none may be a reference batch).
    unfrozen
        Fine-tune every weight (else only the query batches' parameters learn).

    Returns
    -------
    The query model (its latent is the reference encoder's until :func:`train_query`).
    """
    ref = Reference.of(reference)
    ref.n_reference_batches = None  # a saved query model is a reference like any other
    mdata = _wrap(mdata, ref)
    data, observed = query_data(mdata, ref, batch_key=batch_key)
    model = _build(cls, mdata, ref, data, batch_key)
    n_ref = len(ref.batch_names)
    module = model.module
    masks = merge_state(module, ref.state)
    start_from_measured(module, ref.state, n_ref)
    masks.update(add_input_shift(module, [m.n_inputs for m in data.modalities], n_ref))
    fixed = mask_features(module, _observed_by_index(data, observed), n_ref)
    model.query_info = {
        "reference_batches": n_ref,
        "unfrozen": bool(unfrozen),
        "learning": freeze(module, masks, fixed, unfrozen=unfrozen),
        "missing_features": {k: int((~v).sum()) for k, v in observed.items()},
    }
    module.batch_terms = False
    module.fit_mixture = False  # the reference's mixture stays
    module.eval()
    model.is_trained = True  # the reference's encoder already maps the query
    return model


def load_saved_query(cls: type, path: str | Path, mdata: Any):
    """A query model saved with ``model.save`` attached to its query data ``mdata``."""
    ref = Reference.of(path)
    n_ref = int(ref.n_reference_batches)
    mdata = _wrap(mdata, ref)
    batch_key = ref.init_params["batch_key"]
    data, _ = query_data(mdata, ref, batch_key=batch_key, query_batches=ref.batch_names[n_ref:])
    model = _build(cls, mdata, ref, data, batch_key)
    add_input_shift(model.module, [m.n_inputs for m in data.modalities], n_ref)
    model.module.batch_terms = False
    model.module.fit_mixture = False
    load_state(model.module, ref.state, path)
    model.module.eval()
    model.is_trained = True
    meta = read_model(path)["meta"]
    model.query_info = dict(meta["query"])
    model.train_params = meta.get("train_params", {})
    return model


#: Cells per group of :func:`validation_noise` and the most groups it draws.
NOISE_GROUP, NOISE_GROUPS = 64, 64


@torch.no_grad()
def validation_losses(model: Any, batches: Iterable[Any], *, seed: int) -> list[float]:
    """The module's validation loss of each of ``batches`` (each a share of its
    ``total`` cells, see ``MosaicModule.validation_loss``): in eval mode, with torch's random
    stream (the sampled latents) forked and seeded ``seed``; the module's mode restored.

    The one evaluation loop of the query: :func:`validation_noise` scores random groups of
    cells with it, :func:`train_query` the validation cells at the start.
    """
    module = model.module
    was = module.training
    module.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return [float(module.validation_loss(b)) for b in batches]
    finally:
        module.train(was)


def _group_batches(model: Any, groups: np.ndarray) -> Iterator[Any]:
    """One batch per row of ``groups`` (cell indices), its loss the group's mean."""
    for group in groups:
        b = model.datamodule.batch(torch.as_tensor(group, device=model.module.device), sort=True)
        b.total = b.cells.numel()
        yield b


def _validation_batches(model: Any) -> Iterator[Any]:
    """The batches of the datamodule's validation cells, as training validates them."""
    dm = model.datamodule
    for units in dm.val_dataloader():
        yield dm.transfer_batch_to_device(units, model.module.device, 0)


def validation_noise(model: Any, n_validation: int, *, seed: int = 0) -> float:
    """Standard error of the model's validation loss over ``n_validation`` query cells.

    The loss (the ELBO per cell over the model's baseline NLL, what early stopping
    monitors) of disjoint random groups of :data:`NOISE_GROUP` cells (at most
    :data:`NOISE_GROUPS` groups), their spread scaled to ``n_validation`` cells:
    ``sd(group means) * sqrt(NOISE_GROUP / n_validation)``.
    """
    rng = np.random.default_rng(seed)
    n_groups = min(NOISE_GROUPS, model.data.n_cells // NOISE_GROUP)
    if n_groups < 2 or n_validation < 1:
        return 0.0
    cells = rng.permutation(model.data.n_cells)[: n_groups * NOISE_GROUP]
    groups = np.sort(cells.reshape(n_groups, NOISE_GROUP), axis=1)
    means = validation_losses(model, _group_batches(model, groups), seed=seed)
    return float(np.std(means, ddof=1) * np.sqrt(NOISE_GROUP / n_validation))


def train_query(
    model: Any,
    *,
    max_epochs: int = 100,
    lr: float = 2e-3,
    min_delta: float | None = None,
    **train_kwargs: Any,
):
    """Train a model of :func:`load_query_data` on its query cells (the options of
    :meth:`~.model.MosaicModel.train`: checkpoints, resume, early stopping, device).

    ``min_delta`` (default: one standard error of the validation loss at the start,
    :func:`validation_noise`): an improvement of the validation ELBO smaller than that is
    not an improvement for early stopping. The query's few free parameters (its decoder rows
    and input shift) keep lowering the ELBO by amounts far below what another draw of
    validation cells would change (MOp: 0.0003 per epoch against a standard error of
    0.010), so without it the query trained 92 epochs for no measurable gain. With the
    default, the weights the query started from are kept when the trained ones do not beat
    them on the validation cells by that much (``model.query_info["kept_start"]``).
    """
    if getattr(model, "query_info", None) is None:
        raise InputError(
            "train_query is for a model of MosaicModel.load_query_data(reference, query): "
            "call model.train() to train a model"
        )
    seed = train_kwargs.get("random_state")
    seed = int(model.init_params["random_state"] if seed is None else seed)
    auto = min_delta is None
    if auto:
        fraction = float(train_kwargs.get("validation_fraction", 0.1))
        min_delta = validation_noise(model, round(fraction * model.data.n_cells), seed=seed)
    model.query_info["min_delta"] = float(min_delta)
    start = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    model.module.train()
    result = model.train(max_epochs=max_epochs, lr=lr, min_delta=min_delta, **train_kwargs)
    model.query_info["kept_start"] = False
    if auto and result.best_score is not None:
        _keep_start_unless_better(model, start, float(result.best_score), min_delta, seed)
    return result


def _keep_start_unless_better(
    model: Any, start: Mapping[str, torch.Tensor], best: float, min_delta: float, seed: int
) -> None:
    """Go back to the weights the query started from (the reference's, the new rows at
    their start) unless training lowered the validation loss by more than ``min_delta``
    (one standard error): on MOp the trained input shift moved small classes (kNN balanced
    accuracy 0.58 against the start's 0.62) for an ELBO gain within the noise."""
    module = model.module
    trained = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.load_state_dict(start)
    module.eval()
    loss = 0.0
    for part in validation_losses(model, _validation_batches(model), seed=seed):
        loss += part  # in order (Python >= 3.12's sum() compensates: other last bits)
    if best < loss - min_delta:
        module.load_state_dict(trained)
    else:
        model.query_info["kept_start"] = True
    model.query_info["start_val_loss"] = loss


def knn_labels(model: Any, *, k: int = 15) -> tuple[pd.Series, pd.DataFrame]:
    """Labels of the model's cells by a distance-weighted ``k``-nearest-neighbour vote among
    the labelled reference cells in the latent (:func:`reference_cells`).

    Returns
    -------
    The labels (categorical Series over the model's cells) and their probabilities
    (cells x label classes, rows sum to 1).
    """
    from sklearn.neighbors import KNeighborsClassifier

    ref = getattr(model, "reference_latent", None)
    if ref is None or ref[0] is None or len(ref[0]) == 0:
        raise InputError(
            "the reference has no labelled cells: train the reference with label_key= to "
            "transfer labels"
        )
    latent, codes = ref
    classes = list(model.data.label_classes)
    clf = KNeighborsClassifier(n_neighbors=min(int(k), len(codes)), weights="distance")
    clf.fit(np.asarray(latent, dtype=np.float32), np.asarray(codes))
    z = model.get_latent_representation()
    probs = np.zeros((z.shape[0], len(classes)), dtype=np.float32)
    probs[:, clf.classes_] = clf.predict_proba(z)
    names = np.asarray(classes)
    labels = pd.Series(
        pd.Categorical(names[probs.argmax(1)], categories=classes), index=model.data.obs_names
    )
    return labels, pd.DataFrame(probs, index=model.data.obs_names, columns=classes)
