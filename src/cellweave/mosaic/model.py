"""``MosaicModel``: the user-facing mosaic integration model (scvi-tools style, no mixins).

>>> model = MosaicModel(mdata, batch_key="batch", label_key="cell_type")  # doctest: +SKIP
>>> model.train(max_epochs=100)                                          # doctest: +SKIP
>>> z = model.get_latent_representation()                                 # doctest: +SKIP
>>> labels, probs = model.predict_labels(return_probabilities=True)        # doctest: +SKIP
>>> rna = model.impute_modality("rna")                                    # doctest: +SKIP
>>> model.save("model_dir"); model = MosaicModel.load("model_dir", mdata)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax

from .._params import jsonable
from ..device import parse_training
from ..errors import InputError, MissingKeyError
from ..train import FitResult, fit
from .analysis import differential as _differential
from .analysis import impute as _impute
from .analysis import require_trained
from .clusters import K_MAX
from .config import (
    DATA_OPTIONS,
    MODEL,
    MosaicConfig,
    check_options,
    check_train_options,
    choose_n_clusters,
    resolve_mixture,
)
from .data import MosaicData, _labels
from .datamodule import MosaicDataModule
from .inputs import as_mudata as _as_mudata
from .inputs import guidance_graph as _guidance_graph
from .labels import spread_labels
from .persist import history_entry, history_frame, load_state, read_model, write_model
from .query import knn_labels as _knn_labels
from .query import load_query_data as _load_query_data
from .query import load_saved_query, reference_cells
from .query import train_query as _train_query
from .vae import MosaicModule

__all__ = ["MosaicModel", "choose_n_clusters"]


class MosaicModel:
    """Mosaic integration of RNA, ATAC and protein measured in any subset per batch.

    Parameters
    ----------
    mdata
        MuData whose modalities hold only the cells that measured them (an AnnData with
        ``modality=`` for one-modality batch integration). Raw counts in each ``X``.
    batch_key
        ``mdata.obs`` column of batches (``None``: one batch, no adversary).
    label_key
        ``mdata.obs`` column of cell labels (or one label per cell), NaN for unlabelled
        cells: the semi-supervised mode (labelled cells fix their cluster; a classifier loss
        on ``q(c | z)``; labelled cells in every minibatch).
    graph_key
        Guidance graph: a key (or keys) of ``mdata.varp``, a links table, ``"auto"`` (the
        ``varp`` graphs ``gene_peak``/``gene_protein``/``guidance`` that exist, plus a
        gene–protein graph by name matching when RNA and protein are present) or ``None``.
    modality
        Kind of an AnnData input (``"rna"``, ``"atac"``, ``"protein"``).
    **options
        The options of :data:`cellweave.mosaic.config.MODEL` (types, ranges, defaults; an
        unknown or invalid one is an ``InvalidOptionError`` before any work):
        ``n_latent`` (latent dimension); ``n_clusters`` (mixture prior; see below);
        ``n_continuous`` (within-cluster ``u``); ``mixture`` (``"exact"`` sum over clusters,
        ``"gumbel"`` sample, ``"marginal"``: the clustering mode, below; the default
        ``"auto"``: ``"marginal"`` without labels, ``"exact"`` with them,
        :func:`~cellweave.mosaic.config.resolve_mixture`);
        ``cluster_warmup``, ``cluster_refit`` (``"marginal"``: epochs before the mixture is
        fitted to the latent, and between refits);
        ``modalities``, ``modality_types``, ``likelihoods``, ``representations``,
        ``max_features``, ``n_comps`` (see :meth:`MosaicData.from_mudata`);
        ``label_classes`` (default: the labels present); ``encoder_hidden``,
        ``n_embedding``, ``decoder_hidden`` (empty: linear GLUE-style decoder), ``dropout``;
        the loss weights and schedule ``graph_weight``, ``adversarial_weight``,
        ``mmd_weight``, ``classification_weight``, ``align_weight``, ``modality_dropout``,
        ``kl_warmup``, ``encode_batch``, ``discriminator_lr``, ``modality_weights``,
        ``temperature`` (see :mod:`cellweave.mosaic.vae`); ``random_state`` (seed of the
        fitting subsamples and the initial weights).

    Notes
    -----
    Clusters: with ``mixture="marginal"`` the prior is the closed-form mixture ``p(z)``
    and ``q(c | z)`` its responsibilities; after ``cluster_warmup`` epochs, and every
    ``cluster_refit`` epochs after, the components are fitted to the latent (a diagonal
    Gaussian mixture on the posterior means, :mod:`cellweave.mosaic.clusters`) and the
    batch MMD is scale-free, so the prior clusters the cells (simulator ARI 0.97, every type
    found; the ``"exact"`` mode puts them into one or a few components); it is the default
    without labels (``mixture="auto"``; ``train_params["mixture"]`` says which). The number of
    clusters: ``n_clusters`` when given; else the label classes; else, with
    ``"marginal"``, the ``k`` in 2..30 of the gap statistic of k-means on the warm-up
    latent (:func:`~cellweave.mosaic.clusters.choose_k`; chosen again at ``cluster_warmup``
    x 2, 4, ... epochs; the other slots pruned); else the silhouette criterion of
    :func:`choose_n_clusters` on the encoder input. ``train_params["n_clusters"]`` and
    ``["n_clusters_criterion"]`` say which (``"given"``, ``"label classes"``,
    ``"gap_statistic"``, ``"silhouette"``).
    """

    def __init__(
        self,
        mdata: Any,
        *,
        batch_key: str | None = None,
        label_key: str | np.ndarray | pd.Series | None = None,
        graph_key: Any = "auto",
        modality: str | None = None,
        _saved: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        opts = check_options(options)  # before any work: one InvalidOptionError
        seed = opts.pop("random_state")
        labels = None if label_key is None or isinstance(label_key, str) else label_key
        mdata = _as_mudata(mdata, modality)
        self.mdata = mdata
        saved = _saved or {}
        data_options = {o.name: opts.pop(o.name) for o in DATA_OPTIONS}
        classes = saved.get("label_classes", data_options.pop("label_classes"))
        self.data = (
            saved["data"]
            if "data" in saved
            else MosaicData.from_mudata(
                mdata,
                batch_key=batch_key,
                label_key=None if labels is not None else label_key,
                label_classes=classes,
                batch_names=saved.get("batch_names"),
                fitted=saved.get("fitted"),
                random_state=seed,
                **data_options,
            )
        )
        if labels is not None:
            self.data.label_codes, self.data.label_classes = _given_labels(
                self.data, labels, classes
            )
        n_classes = len(self.data.label_classes)
        opts["mixture"] = resolve_mixture(opts["mixture"], n_classes)
        criterion = "given" if opts["n_clusters"] is not None else "label classes"
        if opts["n_clusters"] is None and not n_classes:
            fits = opts["cluster_warmup"] > 0 and opts["mixture"] == "marginal"
            criterion = "gap_statistic" if fits else "silhouette"
        if opts["n_clusters"] is None:  # without labels: K_MAX slots, k chosen at warm-up
            opts["n_clusters"] = n_classes or (
                K_MAX
                if criterion != "silhouette"
                else choose_n_clusters(self.data, random_state=seed)
            )
        if opts["n_clusters"] < max(n_classes, 1):
            raise InputError(
                f"n_clusters={opts['n_clusters']} is smaller than the {n_classes} label classes: "
                f"pass n_clusters >= {n_classes}"
                if n_classes
                else f"n_clusters={opts['n_clusters']} is invalid: pass n_clusters >= 1"
            )
        self.init_params = jsonable(
            {
                "batch_key": batch_key,
                "label_key": "<labels>" if labels is not None else label_key,
                "graph_key": "<links table>" if isinstance(graph_key, pd.DataFrame) else graph_key,
                "modality": modality,
                **MODEL.defaults(),
                **options,
                "n_clusters": int(opts["n_clusters"]),
                "random_state": seed,
            }
        )
        self.config = MosaicConfig.from_options(opts)
        self.graph = (
            saved["graph"] if "graph" in saved else _guidance_graph(mdata, self.data, graph_key)
        )
        self.datamodule = MosaicDataModule(self.data, seed=seed)
        torch.manual_seed(seed)
        self.module = MosaicModule(
            self.data, self.config, sample=self.datamodule.sample(), graph=self.graph
        )
        self.module.seed = seed
        self.module.choose_clusters = criterion == "gap_statistic"
        self.cluster_criterion = criterion
        self.is_trained = False
        self.fit_result: FitResult | None = None
        self.train_params: dict[str, Any] = {}
        self._history: pd.DataFrame | None = None
        # query models (:mod:`.query`): what was mapped, and the reference's labelled cells
        self.query_info: dict[str, Any] | None = None
        self.reference_latent: tuple[np.ndarray, np.ndarray] | None = None

    def __repr__(self) -> str:
        mods = ", ".join(
            f"{m.name} ({m.kind}, {int(m.present.sum())} cells x {m.n_features}, {m.likelihood})"
            for m in self.data.modalities
        )
        return (
            f"MosaicModel({self.data.n_cells} cells; {mods}; {len(self.data.batch_names)} "
            f"batches; {self.config.n_clusters} clusters; trained={self.is_trained})"
        )

    # ------------------------------------------------------------------ training
    def train(
        self,
        *,
        max_epochs: int = 100,
        batch_size: int | None = None,
        lr: float = 2e-3,
        validation_fraction: float = 0.1,
        early_stopping: bool = True,
        patience: int = 8,
        min_delta: float = 0.0,
        labelled_per_batch: int = 32,
        balance_batches: bool = True,
        checkpoint_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        device: str = "auto",
        accelerator: str | None = None,
        devices: Any = None,
        strategy: Any = None,
        precision: Any = None,
        random_state: int | None = None,
        num_threads: int | None = None,
        progress: bool | None = None,
    ) -> FitResult:
        """Fit the model with Lightning (:func:`cellweave.train.fit`) on the batches of a
        :class:`~.datamodule.MosaicDataModule` (kept as ``model.datamodule``).

        Parameters
        ----------
        max_epochs
            Passes over the training cells at most.
        batch_size
            Cells per step (plus ``labelled_per_batch`` labelled cells); default: a sixteenth
            of the cells, between 64 and 512 (at least ~16 steps per epoch on small data).
        lr
            Adam learning rate.
        validation_fraction
            Cells held out per batch for early stopping (``0``: none, train ``max_epochs``).
        early_stopping, patience
            Stop when the validation ELBO has not improved for ``patience`` epochs; the best
            weights are kept.
        min_delta
            Smaller improvements of the validation ELBO do not count (``train_query`` sets it).
        labelled_per_batch
            Labelled cells added to every step (semi-supervised mode).
        balance_batches
            Draw every epoch's cells with equal shares per batch (in memory only).
        checkpoint_dir, resume
            ``last.ckpt`` written there atomically every epoch; ``resume=True`` continues exactly.
        device
            ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"mps"``, checked
            before any work (:func:`cellweave.device.parse_device`).
        accelerator, devices, strategy, precision
            Lightning's, for several devices (e.g. ``accelerator="cpu", devices=2,
            strategy="ddp"``; see :func:`cellweave.train.fit`): ``batch_size`` stays per step.
        random_state
            Seed of the split, the sampling and the training (default: the model's).
        num_threads
            torch CPU threads during training.
        progress
            Show a progress bar (default: on an interactive terminal).
        """
        check_train_options(locals())
        hardware = {"device": device, "accelerator": accelerator, "devices": devices}
        hardware.update(strategy=strategy, precision=precision)
        parse_training(**hardware)  # before any work: one InvalidOptionError
        seed = int(self.init_params["random_state"] if random_state is None else random_state)
        self.datamodule = MosaicDataModule(
            self.data,
            batch_size=batch_size,
            validation_fraction=validation_fraction,
            labelled_per_batch=labelled_per_batch,
            balance_batches=balance_batches,
            seed=seed,
            tensors=self.datamodule.tensors,
        )
        self.module.lr = float(lr)
        start = time.perf_counter()
        result = fit(
            self.module,
            datamodule=self.datamodule,
            max_epochs=int(max_epochs),
            early_stopping=bool(early_stopping),
            patience=int(patience),
            min_delta=float(min_delta),
            **hardware,
            seed=seed,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            fingerprint={"init_params": self.init_params, **self.datamodule.fingerprint()},
            progress=progress,
            num_threads=num_threads,
        )
        self.module.eval()
        self.is_trained = True
        self.fit_result = result
        self._history = result.history
        self.train_params = jsonable(
            {
                "max_epochs": max_epochs,
                "batch_size": self.datamodule.batch_size,
                "lr": lr,
                "validation_fraction": validation_fraction,
                "early_stopping": early_stopping,
                "patience": patience,
                "min_delta": min_delta,
                "labelled_per_batch": labelled_per_batch,
                "balance_batches": balance_batches,
                "device": result.device,
                "random_state": seed,
                "epochs": len(result.epochs),
                "best_epoch": result.best_epoch,
                "seconds": time.perf_counter() - start,
                "n_clusters": int(self.module.prior.active().sum()),
                "n_clusters_criterion": self.cluster_criterion,
                "mixture": self.config.mixture,
            }
        )
        return result

    @property
    def history(self) -> pd.DataFrame:
        """One row per training epoch (index ``epoch``): the loss terms (``loss`` is the
        total), ``val_loss`` and ``seconds``; saved with the model. Empty before training;
        plot it with ``cw.pl.history(model)``."""
        if self._history is None:
            return FitResult().history
        return self._history

    # ------------------------------------------------------------------ outputs
    def _modality_index(self, modality: str) -> int:
        names = self.data.names
        if modality not in names:
            raise MissingKeyError(f"the model has no modality {modality!r}: use one of {names}")
        return names.index(modality)

    @torch.no_grad()
    def infer(
        self,
        cells: np.ndarray | None = None,
        *,
        use_modalities: Sequence[str] | None = None,
        batch_size: int = 4096,
    ) -> dict[str, np.ndarray]:
        """The encoder's outputs for ``cells`` (indices; default all).

        Parameters
        ----------
        cells
            Cell indices (default: every cell).
        use_modalities
            Modalities the encoder may use (default: all a cell measured).
        batch_size
            Cells per forward pass.

        Returns
        -------
        ``{"mean", "log_var"}`` of ``q(z | x)``, ``"attention"`` (fusion weights per
        modality), ``"logits"`` of ``q(c | z)`` at the mean and ``"batch"`` codes, one row
        per cell.
        """
        require_trained(self)
        self.module.eval()
        mask = None
        if use_modalities is not None:
            for name in use_modalities:
                self._modality_index(name)
            mask = torch.as_tensor([name in use_modalities for name in self.data.names])
        cells = np.arange(self.data.n_cells) if cells is None else np.asarray(cells)
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, cells.size, batch_size):
            chunk = torch.as_tensor(cells[start : start + batch_size], dtype=torch.long)
            out = self.module.infer(self.datamodule.batch(chunk, counts=False), mask=mask)
            for k, v in out.items():
                parts.setdefault(k, []).append(v.cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}

    @torch.no_grad()
    def decode(
        self,
        modality: str,
        z: Any,
        *,
        transform_batch: int | str,
        library_size: float | None,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """Expected values of ``modality`` at latent points ``z`` (``(n, n_latent)``).

        Parameters
        ----------
        modality
            Modality to generate.
        z
            Latent points.
        transform_batch
            Batch (name or code) whose decoder parameters (scale, bias) are used.
        library_size
            Library size of the output; ``None`` only where :meth:`predicts_totals` (the
            decoder's own totals). Ignored for Bernoulli (open probabilities).
        batch_size
            Points per decoder pass.

        Returns
        -------
        ``(n, n_features)`` float32 array.
        """
        require_trained(self)
        i = self._modality_index(modality)
        if isinstance(transform_batch, str):
            transform_batch = self.data.batch_names.index(transform_batch)
        z = torch.as_tensor(np.asarray(z, dtype=np.float32))
        v = self.module.feature_embedding(i)
        parts = [
            self.module.expected(i, z[s : s + batch_size], int(transform_batch), library_size, v)
            for s in range(0, z.shape[0], batch_size)
        ]
        if not parts:
            return np.zeros((0, self.data.modalities[i].n_features), dtype=np.float32)
        return torch.cat(parts).numpy()

    def predicts_totals(self, modality: str) -> bool:
        """Whether the decoder of ``modality`` predicts each cell's total itself (absolute
        counts, protein), so :meth:`decode` needs no library size."""
        return bool(self.module.decoders[self._modality_index(modality)].absolute)

    def get_latent_representation(self, *, cells: np.ndarray | None = None) -> np.ndarray:
        """Posterior means of ``z``, ``(n_cells, n_latent)`` float32 (``cells``: indices)."""
        return self.infer(cells)["mean"].astype(np.float32)

    def get_cluster_probabilities(self) -> np.ndarray:
        """``q(c | z)`` at the posterior mean, ``(n_cells, n_clusters)`` (rows sum to 1;
        the clusters in use only: those the cluster-count criterion pruned are left out)."""
        return self.cluster_probabilities(self.infer()["logits"])

    def cluster_probabilities(self, logits: np.ndarray) -> np.ndarray:
        """:meth:`get_cluster_probabilities` from the cluster logits of :meth:`infer`."""
        active = self.module.prior.active().cpu().numpy()
        return softmax(logits[:, active], axis=1)

    def get_attention(self) -> pd.DataFrame:
        """Per-cell fusion weights over the modalities (0 for those a cell lacks)."""
        att = self.infer()["attention"]
        return pd.DataFrame(att, index=self.data.obs_names, columns=self.data.names)

    def predict_labels(self, *, return_probabilities: bool = False, spread: bool = False):
        """Predicted label per cell (argmax of ``q(c | z)`` over the label classes; without
        labels, the cluster ``"cluster_<k>"``). ``spread``: the classifier's probabilities
        spread over the latent's kNN graph, labelled cells clamped
        (:func:`~.labels.spread_labels`; uses the unlabelled cells).

        Returns
        -------
        A Series of labels, and with ``return_probabilities`` also a DataFrame cells x
        classes (rows sum to 1).
        """
        post = self.infer()
        labels, probs = self._labels_from_logits(post["logits"])
        if spread and self.data.label_classes:
            values = spread_labels(post["mean"], probs.to_numpy(), self.data.label_codes)
            probs = pd.DataFrame(values, index=probs.index, columns=probs.columns)
            names = np.asarray(probs.columns)[values.argmax(1)]
            labels = pd.Series(pd.Categorical(names, categories=list(probs.columns)), probs.index)
        if return_probabilities:
            return labels, probs
        return labels

    def _labels_from_logits(self, logits: np.ndarray) -> tuple[pd.Series, pd.DataFrame]:
        """:meth:`predict_labels` (labels and probabilities) from cluster logits of all cells."""
        classes = self.data.label_classes
        if classes:
            probs = softmax(logits[:, : len(classes)], axis=1)
            names = list(classes)
        else:
            probs = self.cluster_probabilities(logits)
            names = [f"cluster_{k}" for k in range(probs.shape[1])]
        labels = pd.Series(
            pd.Categorical(np.asarray(names)[probs.argmax(1)], categories=names),
            index=self.data.obs_names,
        )
        return labels, pd.DataFrame(probs, index=self.data.obs_names, columns=names)

    # Generation (:mod:`.analysis` holds them with their documentation; each checks first
    # that the model is trained).
    impute_modality = _impute
    differential = _differential

    # Query mapping (:mod:`.query`, scArches-style): new batches onto a trained reference.
    load_query_data = classmethod(_load_query_data)
    train_query = _train_query
    knn_labels = _knn_labels

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model to the folder ``path``: ``model.json`` (init parameters, features,
        batches, classes), ``representation.npz``, ``graph.npz`` and ``weights.pt``."""
        require_trained(self)
        meta = {
            "init_params": self.init_params,
            "train_params": self.train_params,
            "history": history_entry(self.history),
            "batch_names": self.data.batch_names,
            "label_classes": self.data.label_classes,
        }
        if self.query_info is not None:
            meta["query"] = self.query_info
        latent, labels = reference_cells(self)
        return write_model(
            path,
            meta,
            fitted=self.data.fitted_state(),
            graph=self.graph,
            state=self.module.state_dict(),
            overwrite=overwrite,
            reference=None if latent is None else {"latent": latent, "labels": labels},
        )

    @classmethod
    def load(cls, path: str | Path, mdata: Any, *, modality: str | None = None) -> MosaicModel:
        """Load a model saved with :meth:`save` and attach it to ``mdata`` (same features and
        batches; labels, if any, among the saved classes)."""
        saved = read_model(path, strict=True)
        if saved["meta"].get("query"):
            return load_saved_query(cls, path, _as_mudata(mdata, modality))
        reference = saved.pop("reference", None)
        meta = saved.pop("meta")
        state = saved.pop("state")
        params = dict(meta["init_params"])
        if modality is not None:
            params["modality"] = modality
        params["modalities"] = list(saved["fitted"])
        params.pop("graph_key", None)
        label_key = params.get("label_key")
        if label_key is not None and label_key not in mdata.obs.columns:
            params["label_key"] = None  # query data without labels: predict the saved classes
        model = cls(mdata, _saved=saved, **params)
        load_state(model.module, state, path)
        model.module.eval()
        model.is_trained = True
        model.init_params = meta["init_params"]
        model.train_params = meta.get("train_params", {})
        if meta.get("history"):
            model._history = history_frame(meta["history"])
        if reference:
            model.reference_latent = (reference["latent"], reference["labels"])
        return model


def _given_labels(
    data: MosaicData, labels: Any, classes: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """Label codes and classes from labels given per cell (NaN/None: unlabelled)."""
    values = np.asarray(labels, dtype=object)
    if values.shape != (data.n_cells,):
        raise InputError(
            f"label_key holds {values.shape[0] if values.ndim else 1} labels for "
            f"{data.n_cells} cells: pass an obs column name or one label per cell"
        )
    obs = pd.DataFrame({"labels": values}, index=data.obs_names)
    return _labels(obs, "labels", data.n_cells, classes)
