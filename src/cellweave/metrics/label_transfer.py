"""Label-transfer scores: transferred labels against the truth, and the 1 % kNN protocol."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from ..errors import EmptyDataError, InputError
from .distributions import as_label_array
from .inputs import embedding_array

__all__ = ["label_transfer_balanced_accuracy", "label_transfer_scores", "labelled_split"]


def label_transfer_scores(true: Any, pred: Any) -> dict[str, float]:
    """Accuracy, macro F1 and balanced accuracy of transferred labels.

    Parameters
    ----------
    true, pred
        Reference and transferred labels, one per cell. Labels are compared as strings, so
        ``1`` and ``"1"`` match.

    Returns
    -------
    dict with ``accuracy`` (fraction correct), ``macro_f1`` (unweighted mean F1 over the
    **true** classes; predicted-only classes such as "unassigned" count as errors but get no
    class of their own) and ``balanced_accuracy`` (mean recall over the true classes).
    """
    t = as_label_array(true, "true").astype(str)
    p = as_label_array(pred, "pred", t.shape[0]).astype(str)
    if t.size == 0:
        raise EmptyDataError("true is empty: pass at least one label")
    classes = np.unique(t)
    correct = t == p
    recall = np.array([correct[t == c].mean() for c in classes])
    f1 = f1_score(t, p, labels=classes, average="macro", zero_division=0.0)
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1),
        "balanced_accuracy": float(recall.mean()),
    }


def labelled_split(labels: Any, *, train_size: float = 0.01, random_state: int = 0) -> np.ndarray:
    """Boolean mask of the cells kept labelled in the label-transfer protocol.

    ``sklearn.model_selection.train_test_split(arange(n), train_size=train_size,
    stratify=labels, random_state=random_state)``; a model trained semi-supervised should see
    only these labels, and is scored on the others.
    """
    lab = as_label_array(labels, "labels").astype(str)
    counts = pd.Series(lab).value_counts()
    if (counts < 2).any():
        raise InputError(
            f"label(s) {list(counts.index[counts < 2])} have a single cell: a stratified split "
            "needs >= 2 cells per label; merge or drop them first"
        )
    n_train = int(np.floor(train_size * lab.size)) if train_size < 1 else int(train_size)
    if n_train < len(counts):
        raise InputError(
            f"a stratified split of {train_size:g} of {lab.size} cells keeps {n_train} labelled "
            f"cells, fewer than the {len(counts)} classes: score more cells (or a larger share)"
        )
    train, _ = train_test_split(
        np.arange(lab.size), train_size=train_size, stratify=lab, random_state=random_state
    )
    mask = np.zeros(lab.size, dtype=bool)
    mask[train] = True
    return mask


def label_transfer_balanced_accuracy(
    embedding: Any,
    labels: Any,
    *,
    train_size: float = 0.01,
    k: int = 10,
    random_state: int = 0,
    predictions: Any = None,
) -> float:
    """Balanced accuracy of labels transferred from a stratified ``train_size`` fraction.

    A ``k``-nearest-neighbour classifier (``sklearn``, uniform weights, Euclidean) is fitted on
    the cells of :func:`labelled_split` and predicts the others; the score is the mean recall
    over the true classes of those cells. With ``predictions`` (e.g. a semi-supervised
    model's own predicted labels), those are scored on the same held-out cells instead and
    ``embedding`` is not used.
    """
    lab = as_label_array(labels, "labels").astype(str)
    train = labelled_split(lab, train_size=train_size, random_state=random_state)
    if predictions is not None:
        pred = as_label_array(predictions, "predictions", lab.size).astype(str)[~train]
    else:
        x = embedding_array(embedding)
        if x.shape[0] != lab.size:
            raise InputError(
                f"embedding has {x.shape[0]} rows but labels has {lab.size} entries: pass one "
                "label per cell, in the same order"
            )
        clf = KNeighborsClassifier(n_neighbors=min(k, int(train.sum()))).fit(x[train], lab[train])
        pred = clf.predict(x[~train])
    return label_transfer_scores(lab[~train], pred)["balanced_accuracy"]
