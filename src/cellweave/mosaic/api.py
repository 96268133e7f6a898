"""``integrate``: mosaic integration in one call, results written into the data (scanpy style)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._params import params_entry
from ..device import check_device
from ..errors import InvalidOptionError
from ..validate import check_labels, check_min_obs, warn_unlabelled_classes
from .config import check_options, check_train_options
from .model import MosaicModel

__all__ = ["MIN_CELLS", "integrate", "map_query", "result_keys", "write_results"]

_DEFAULT_KEY = "X_cellweave"
#: Fewest cells ``integrate`` accepts (one cell has nothing to be integrated with).
MIN_CELLS = 2


def integrate(
    data: Any,
    *,
    batch_key: str | None = None,
    label_key: str | None = None,
    modality: str | None = None,
    graph_key: Any = "auto",
    labelled_fraction: float | None = None,
    max_epochs: int = 100,
    batch_size: int | None = None,
    device: str = "auto",
    random_state: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    key_added: str | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
    copy: bool = False,
    return_model: bool = False,
    **model_kwargs: Any,
):
    """Integrate a mosaic MuData (or one modality in several batches) with :class:`MosaicModel`.

    Parameters
    ----------
    data
        MuData whose modalities hold only the cells that measured them, or an AnnData (one
        modality measured in several batches) with ``modality=``.
    batch_key, label_key, modality, graph_key
        See :class:`MosaicModel`.
    labelled_fraction
        Train with the labels of a stratified fraction of the labelled cells only
        (:func:`cellweave.metrics.scib.labelled_split` with ``random_state``), e.g. to score
        label transfer on the others; ``0``: train without labels. ``data.obs`` is not changed.
    max_epochs, batch_size, device
        See :meth:`MosaicModel.train`.
    random_state
        Seed of everything.
    checkpoint_dir, resume
        Write a checkpoint there after every epoch (atomically); ``resume=True`` continues
        a killed run from it and ends where an uninterrupted run ends (see
        :meth:`MosaicModel.train`).
    key_added
        ``obsm`` key of the latent (default ``"X_cellweave"``); every other key is named
        from it (see below) and the call's parameters go to ``uns[key_added]["params"]``
        (default ``uns["cellweave"]``).
    train_kwargs
        Further :meth:`MosaicModel.train` options.
    copy
        Return a modified copy instead of writing into ``data``.
    return_model
        Return the trained :class:`MosaicModel` (``model.mdata`` holds the results; not with
        ``copy=True``).
    **model_kwargs
        Further :class:`MosaicModel` options (checked before any work).

    Returns
    -------
    ``None``, the copy with ``copy=True`` or the model with ``return_model=True``. Written
    into ``data`` (``<base>`` is ``key_added`` without a leading ``"X_"``; see
    :func:`result_keys`):

    * ``obsm[key_added]`` - posterior mean of the latent, ``(n_cells, n_latent)``;
    * the same latent in each modality's ``obsm[key_added]`` (its cells' rows), e.g.
      ``mdata["rna"].obsm["X_cellweave"]``;
    * ``obsm["<base>_clusters"]`` - cluster probabilities ``q(c | z)`` of the mixture prior
      (rows sum to 1), a DataFrame with columns ``cluster_0``, ``cluster_1``, ... (the
      clusters in use; their number and the criterion that chose it in
      ``uns[...]["params"]["train"]["n_clusters"]`` / ``["n_clusters_criterion"]``);
    * ``obs["<base>_cluster"]`` - the most probable cluster, categorical;
    * ``obsm["<base>_attention"]`` - fusion weights per modality, a DataFrame with one
      column per modality (also in ``uns[...]["modalities"]``);
    * ``obs["<base>_label"]`` (categorical, its colours in ``uns["<base>_label_colors"]``
      as scanpy reads them), ``obs["<base>_label_probability"]`` and
      ``obsm["<base>_label_probabilities"]`` (a DataFrame, columns the classes, also in
      ``uns[...]["label_classes"]``) - predicted labels (clusters without labels);
    * ``uns[<base>]`` (``uns[key_added]`` when given) - ``params`` (model and training),
      ``modalities``, ``label_classes``, ``epochs``, ``seconds``.
    """
    check_options({**model_kwargs, "random_state": random_state})
    train = {"max_epochs": max_epochs, "batch_size": batch_size, **dict(train_kwargs or {})}
    check_train_options(train)
    check_device(device)
    if copy and return_model:
        raise InvalidOptionError("pass copy=True or return_model=True, not both")
    _check_data(data, None if labelled_fraction == 0 else label_key)
    data = data.copy() if copy else data
    labels = _labels(data, label_key, labelled_fraction, random_state)
    model = MosaicModel(
        data,
        batch_key=batch_key,
        label_key=labels,
        modality=modality,
        graph_key=graph_key,
        random_state=random_state,
        **model_kwargs,
    )
    model.train(
        max_epochs=max_epochs,
        batch_size=batch_size,
        device=device,
        random_state=random_state,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        **dict(train_kwargs or {}),
    )
    write_results(data, model, key_added=key_added)
    if return_model:
        return model
    return data if copy else None


def map_query(
    data: Any,
    reference: Any,
    *,
    batch_key: str = "batch",
    unfrozen: bool = False,
    key_added: str | None = None,
    copy: bool = False,
    return_model: bool = False,
    **train_kwargs: Any,
):
    """Map query batches onto a trained mosaic model (scArches-style, see
    :mod:`cellweave.mosaic.query`) and write the results into ``data`` as :func:`integrate`
    does.

    Parameters
    ----------
    data
        The query MuData (modalities a subset of the reference's, by name; raw counts).
    reference
        A trained :class:`MosaicModel` or the folder of a saved one.
    batch_key
        ``data.obs`` column of the query's batches (new names, not the reference's).
    unfrozen
        Fine-tune every weight (default: only the query batches' parameters learn).
    key_added, copy, return_model
        See :func:`integrate`.
    **train_kwargs
        :meth:`MosaicModel.train` options (``max_epochs``, ``lr``, ``device``,
        ``random_state``, ``checkpoint_dir``, ``resume``, ...), checked before any work.

    Returns
    -------
    As :func:`integrate`; besides its keys, with a labelled reference,
    ``obs["<base>_knn_label"]`` and ``obs["<base>_knn_label_probability"]``: the label by a
    15-nearest-neighbour vote among the reference's labelled cells in the latent.
    """
    check_train_options(train_kwargs)
    check_device(train_kwargs.get("device", "auto"))
    if copy and return_model:
        raise InvalidOptionError("pass copy=True or return_model=True, not both")
    data = data.copy() if copy else data
    model = MosaicModel.load_query_data(reference, data, batch_key=batch_key, unfrozen=unfrozen)
    model.train_query(**train_kwargs)
    write_results(data, model, key_added=key_added)
    return model if return_model else (data if copy else None)


def _check_data(data: Any, label_key: str | None) -> None:
    """Before any work: at least :data:`MIN_CELLS` cells, and a label column the training
    uses with at least two classes (the model checks the rest: modalities, values, keys)."""
    if hasattr(data, "n_obs"):
        check_min_obs(data, MIN_CELLS, what="cells", name="data")
    obs = getattr(data, "obs", None)
    if isinstance(label_key, str) and obs is not None and label_key in obs.columns:
        check_labels(
            obs[label_key],
            where=f"data.obs[{label_key!r}]",
            fix="label some cells with 2 or more classes, or pass label_key=None",
        )


def _labels(data: Any, label_key: str | None, fraction: float | None, seed: int) -> Any:
    """``label_key``, or (with ``fraction``) the labels of a stratified fraction of the
    labelled cells, the others ``None`` (``fraction=0``: no labels)."""
    if label_key is None or fraction is None:
        return label_key
    if fraction == 0:
        return None
    if not 0 < fraction < 1:
        raise InvalidOptionError(f"labelled_fraction={fraction!r} is invalid; pass 0 <= f < 1")
    from ..metrics.scib import labelled_split

    if label_key not in data.obs.columns:
        return label_key  # the model names the missing column
    col = data.obs[label_key]
    truth = col.astype(object).where(col.notna(), None)
    known = truth.notna().to_numpy()
    keep = np.zeros(len(truth), dtype=bool)
    keep[known] = labelled_split(
        truth[known].astype(str).to_numpy(), train_size=fraction, random_state=seed
    )
    kept = truth.where(keep, None).to_numpy()
    warn_unlabelled_classes(truth, kept, where=f"data.obs[{label_key!r}]")
    return kept


def result_keys(key_added: str | None = None) -> dict[str, str]:
    """The keys :func:`integrate` writes for ``key_added``: ``latent``, ``clusters``,
    ``attention``, ``label_probabilities`` (``obsm``), ``cluster``, ``label``,
    ``label_probability``,
    ``knn_label``, ``knn_label_probability`` (``obs``; query models) and ``uns``."""
    latent = key_added or _DEFAULT_KEY
    base = latent[2:] if latent.startswith("X_") and len(latent) > 2 else latent
    keys = {"latent": latent, "uns": key_added or base}
    names = ("clusters", "cluster", "attention", "label", "label_probability")
    names = (*names, "label_probabilities")
    for name in (*names, "knn_label", "knn_label_probability"):
        keys[name] = f"{base}_{name}"
    return keys


def write_results(data: Any, model: MosaicModel, *, key_added: str | None = None) -> None:
    """Write a trained model's outputs into ``data`` (see :func:`integrate`)."""
    keys = result_keys(key_added)
    post = model.infer()  # one inference pass for every output
    labels, probs = model._labels_from_logits(post["logits"])
    latent = post["mean"].astype(np.float32)
    clusters = model.cluster_probabilities(post["logits"]).astype(np.float32)
    names = list(model.data.names)

    data.obsm[keys["latent"]] = latent
    _latent_per_modality(data, latent, keys["latent"])
    cluster_names = [f"cluster_{k}" for k in range(clusters.shape[1])]
    data.obs[keys["cluster"]] = pd.Categorical(
        np.asarray(cluster_names)[clusters.argmax(1)], categories=cluster_names
    )
    data.obsm[keys["clusters"]] = _frame(data, clusters, cluster_names)
    data.obsm[keys["attention"]] = _frame(data, post["attention"], names)
    data.obs[keys["label"]] = labels.to_numpy()
    data.obs[keys["label"]] = data.obs[keys["label"]].astype("category")
    data.uns[f"{keys['label']}_colors"] = _colors(data.obs[keys["label"]], list(probs.columns))
    data.obs[keys["label_probability"]] = probs.to_numpy().max(1).astype(np.float32)
    data.obsm[keys["label_probabilities"]] = _frame(data, probs.to_numpy(), list(probs.columns))
    data.uns[keys["uns"]] = params_entry(
        {"model": model.init_params, "train": model.train_params},
        modalities=names,
        label_classes=list(probs.columns),
        epochs=int(model.train_params.get("epochs", 0)),
        seconds=float(model.train_params.get("seconds", 0.0)),
    )
    if getattr(model, "query_info", None) is not None and model.reference_latent is not None:
        knn, knn_probs = model.knn_labels()
        data.obs[keys["knn_label"]] = pd.Categorical(knn.to_numpy())
        data.obs[keys["knn_label_probability"]] = knn_probs.to_numpy().max(1).astype(np.float32)
        data.uns[keys["uns"]]["query"] = dict(model.query_info)


def _frame(data: Any, values: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Per-cell values as a DataFrame named by ``columns`` (cells as ``data``'s rows)."""
    return pd.DataFrame(np.asarray(values, dtype=np.float32), index=data.obs_names, columns=columns)


def _latent_per_modality(data: Any, latent: np.ndarray, key: str) -> None:
    """The latent also in each modality's ``obsm[key]`` (its cells' rows), so that
    ``sc.pp.neighbors(mdata["rna"], use_rep=key)`` works on one modality."""
    if not hasattr(data, "mod") or not data.obs_names.is_unique:
        return
    for adata in data.mod.values():
        rows = data.obs_names.get_indexer(adata.obs_names)
        if (rows >= 0).all():
            adata.obsm[key] = latent[rows]


def _colors(labels: pd.Series, classes: list[str]) -> list[str]:
    """``uns[f"{key}_colors"]`` of the predicted labels: one colour per category present,
    each class's colour fixed by its place among every class (stable across runs and
    figures; :func:`cellweave.plotting.category_hex`)."""
    from ..plotting import category_hex

    palette = dict(zip(classes, category_hex(classes), strict=True))
    extra = [c for c in labels.cat.categories if c not in palette]
    palette.update(zip(extra, category_hex([*classes, *extra])[len(classes) :], strict=True))
    return [palette[c] for c in labels.cat.categories]
