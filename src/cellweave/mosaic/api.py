"""``integrate``: mosaic integration in one call, results written into the data (scanpy style)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .model import MosaicModel, _softmax

__all__ = ["integrate"]


def integrate(
    data: Any,
    *,
    batch_key: str | None = None,
    label_key: str | None = None,
    modality: str | None = None,
    graph_key: Any = "auto",
    n_latent: int = 20,
    n_clusters: int | None = None,
    max_epochs: int = 100,
    batch_size: int | None = None,
    device: str = "auto",
    random_state: int = 0,
    key_added: str = "cellweave",
    train_kwargs: Mapping[str, Any] | None = None,
    copy: bool = False,
    **model_kwargs: Any,
):
    """Integrate a mosaic MuData (or one modality in several batches) with :class:`MosaicModel`.

    Parameters
    ----------
    data
        MuData whose modalities hold only the cells that measured them, or an AnnData (one
        modality measured in several batches) with ``modality=``.
    batch_key, label_key, modality, graph_key, n_latent, n_clusters
        See :class:`MosaicModel`.
    max_epochs, batch_size, device
        See :meth:`MosaicModel.train`.
    random_state
        Seed of everything.
    key_added
        Prefix of the output keys.
    train_kwargs
        Further :meth:`MosaicModel.train` options.
    copy
        Return a modified copy instead of writing into ``data``.
    **model_kwargs
        Further :class:`MosaicModel` options.

    Returns
    -------
    ``None`` (or the copy with ``copy=True``). Written into ``data``:

    * ``obsm["X_<key>"]`` - posterior mean of the latent, ``(n_cells, n_latent)``;
    * ``obsm["<key>_clusters"]`` - cluster probabilities ``q(c | z)``;
    * ``obsm["<key>_attention"]`` - fusion weights per modality (columns in
      ``uns[key]["modalities"]``);
    * ``obs["<key>_label"]``, ``obs["<key>_label_probability"]`` and
      ``obsm["<key>_label_probabilities"]`` (columns ``uns[key]["label_classes"]``) -
      predicted labels (clusters without labels);
    * ``uns[key]`` - ``params`` (model and training), ``modalities``, ``label_classes``,
      ``epochs``, ``seconds``.
    """
    data = data.copy() if copy else data
    model = MosaicModel(
        data,
        batch_key=batch_key,
        label_key=label_key,
        modality=modality,
        graph_key=graph_key,
        n_latent=n_latent,
        n_clusters=n_clusters,
        random_state=random_state,
        **model_kwargs,
    )
    model.train(
        max_epochs=max_epochs,
        batch_size=batch_size,
        device=device,
        random_state=random_state,
        **dict(train_kwargs or {}),
    )
    write_results(data, model, key_added=key_added)
    return data if copy else None


def write_results(data: Any, model: MosaicModel, *, key_added: str = "cellweave") -> None:
    """Write a trained model's outputs into ``data`` (see :func:`integrate`)."""
    post = model._infer_all()  # one inference pass for every output
    labels, probs = model._labels_from_logits(post["logits"])

    data.obsm[f"X_{key_added}"] = post["mean"].astype(np.float32)
    data.obsm[f"{key_added}_clusters"] = _softmax(post["logits"]).astype(np.float32)
    data.obsm[f"{key_added}_attention"] = post["attention"].astype(np.float32)
    data.obs[f"{key_added}_label"] = labels.to_numpy()
    data.obs[f"{key_added}_label"] = data.obs[f"{key_added}_label"].astype("category")
    data.obs[f"{key_added}_label_probability"] = probs.to_numpy().max(1).astype(np.float32)
    data.obsm[f"{key_added}_label_probabilities"] = probs.to_numpy().astype(np.float32)
    data.uns[key_added] = {
        "params": {"model": model.init_params, "train": model.train_params},
        "modalities": list(model.data.names),
        "label_classes": list(probs.columns),
        "epochs": int(model.train_params.get("epochs", 0)),
        "seconds": float(model.train_params.get("seconds", 0.0)),
    }
