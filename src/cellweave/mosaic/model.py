"""``MosaicModel``: the user-facing mosaic integration model (scvi-tools style, no mixins).

>>> model = MosaicModel(mdata, batch_key="batch", label_key="cell_type")  # doctest: +SKIP
>>> model.train(max_epochs=100)                                          # doctest: +SKIP
>>> z = model.get_latent_representation()                                 # doctest: +SKIP
>>> labels, probs = model.predict_labels(return_probabilities=True)        # doctest: +SKIP
>>> rna = model.impute_modality("rna")                                    # doctest: +SKIP
>>> model.save("model_dir"); model = MosaicModel.load("model_dir", mdata)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from .. import __version__
from ..errors import FileFormatError, InputError, MissingKeyError
from ..train import FitResult, fit
from .analysis import differential as _differential
from .analysis import impute as _impute
from .data import MosaicData
from .guidance import gene_protein_links, graph_from_links
from .kinds import kind_names
from .sampling import balanced_table, blocks, split_cells
from .vae import MosaicConfig, MosaicModule

__all__ = ["MosaicModel", "choose_n_clusters"]

_AUTO_GRAPHS = ("gene_peak", "gene_protein", "guidance")
_WEIGHTS, _ARRAYS, _META, _GRAPH = "weights.pt", "representation.npz", "model.json", "graph.npz"
# version of the saved layout and of what the weights mean; 2: protein decoded as absolute
# counts (a format-1 protein decoder's weights would decode wrongly), bump on any such change
_FORMAT = 2


def _as_mudata(data: Any, modality: str | None):
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


def _guidance_graph(mdata: Any, data: MosaicData, graph_key: Any) -> sparse.csr_matrix | None:
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


def choose_n_clusters(
    data: MosaicData, *, k_range: Sequence[int] = range(4, 31, 2), random_state: int = 0
) -> int:
    """Default number of clusters without labels: the ``k`` in ``k_range`` with the highest
    silhouette of k-means on the encoder inputs of the modality measured in most cells
    (3000 cells at most)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    m = max(data.modalities, key=lambda m: int(m.present.sum()))
    cells = np.flatnonzero(m.present)
    rng = np.random.default_rng(random_state)
    cells = np.sort(rng.choice(cells, min(3000, cells.size), replace=False))
    if m.inputs is not None:
        x = m.inputs[cells]
    else:
        x = m.representation.transform(m.read_counts(cells))
    best, best_k = -np.inf, int(k_range[0])
    for k in k_range:
        if k >= cells.size:
            break
        labels = KMeans(n_clusters=int(k), n_init=2, random_state=random_state).fit_predict(x)
        score = silhouette_score(x, labels)
        if score > best:
            best, best_k = score, int(k)
    return best_k


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
        ``mdata.obs`` column of cell labels, NaN for unlabelled cells: enables the
        semi-supervised mode (labelled cells fix their cluster; a classifier loss on
        ``q(c | z)``; labelled cells in every minibatch).
    graph_key
        Guidance graph: a key (or keys) of ``mdata.varp``, a links table, ``"auto"`` (the
        ``varp`` graphs ``gene_peak``/``gene_protein``/``guidance`` that exist, plus a
        gene–protein graph by name matching when RNA and protein are present) or ``None``.
    modality
        Kind of an AnnData input (``"rna"``, ``"atac"``, ``"protein"``).
    n_latent
        Dimension of the latent space.
    n_clusters
        Clusters of the mixture prior. Default: the number of label classes when labels are
        given, else :func:`choose_n_clusters` (silhouette of k-means on the inputs).
    n_continuous
        Dimension of the continuous within-cluster variable ``u``.
    mixture
        ``"exact"`` (sum over clusters) or ``"gumbel"`` (Gumbel-softmax sample).
    modalities, modality_types, likelihoods, representations, max_features, n_comps
        Modality options, see :meth:`MosaicData.from_mudata`.
    label_classes
        The known label classes (default: the labels present).
    encoder_hidden, n_embedding, decoder_hidden, dropout
        Encoder hidden widths, modality embedding width, decoder MLP widths (empty: linear
        GLUE-style decoder), dropout.
    graph_weight, adversarial_weight, classification_weight, align_weight, modality_dropout,
    kl_warmup, modality_weights, temperature
        Loss weights and schedule, see :mod:`cellweave.mosaic.vae`.
    random_state
        Seed of the fitting subsamples and the initial weights.
    """

    def __init__(
        self,
        mdata: Any,
        *,
        batch_key: str | None = None,
        label_key: str | None = None,
        graph_key: Any = "auto",
        modality: str | None = None,
        n_latent: int = 20,
        n_clusters: int | None = None,
        n_continuous: int = 2,
        mixture: str = "exact",
        modalities: Sequence[str] | None = None,
        modality_types: Mapping[str, str] | None = None,
        likelihoods: Mapping[str, str] | str | None = None,
        representations: Mapping[str, str] | str | None = None,
        max_features: Mapping[str, int | None] | int | None = None,
        n_comps: int | None = None,
        label_classes: Sequence[str] | None = None,
        encoder_hidden: Sequence[int] = (256,),
        n_embedding: int = 128,
        decoder_hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
        graph_weight: float = 0.5,
        adversarial_weight: float = 0.05,
        mmd_weight: float = 0.3,
        classification_weight: float = 0.5,
        align_weight: float = 0.1,
        modality_dropout: float = 0.3,
        kl_warmup: int = 5,
        encode_batch: bool = False,
        discriminator_lr: float = 5.0,
        modality_weights: Mapping[str, float] | None = None,
        temperature: float = 0.5,
        random_state: int = 0,
        _saved: Mapping[str, Any] | None = None,
    ) -> None:
        params = {k: v for k, v in locals().items() if k not in ("self", "mdata", "_saved")}
        if mixture not in ("exact", "gumbel"):
            raise InputError(f"mixture={mixture!r} is unknown: use 'exact' or 'gumbel'")
        mdata = _as_mudata(mdata, modality)
        self.mdata = mdata
        saved = _saved or {}
        self.data = MosaicData.from_mudata(
            mdata,
            batch_key=batch_key,
            label_key=label_key,
            modalities=modalities,
            modality_types=modality_types,
            likelihoods=likelihoods,
            representations=representations,
            max_features=max_features,
            n_comps=n_comps,
            label_classes=saved.get("label_classes", label_classes),
            batch_names=saved.get("batch_names"),
            fitted=saved.get("fitted"),
            random_state=random_state,
        )
        n_classes = len(self.data.label_classes)
        if n_clusters is None:
            n_clusters = n_classes or choose_n_clusters(self.data, random_state=random_state)
        if n_clusters < max(n_classes, 1):
            raise InputError(
                f"n_clusters={n_clusters} is smaller than the {n_classes} label classes: pass "
                f"n_clusters >= {n_classes}"
            )
        params["n_clusters"] = int(n_clusters)
        if isinstance(graph_key, pd.DataFrame):
            params["graph_key"] = "<links table>"
        self.init_params = _jsonable(params)
        self.config = MosaicConfig(
            n_latent=int(n_latent),
            n_clusters=int(n_clusters),
            n_continuous=int(n_continuous),
            encoder_hidden=_widths(encoder_hidden),
            n_embedding=int(n_embedding),
            dropout=float(dropout),
            decoder_hidden=_widths(decoder_hidden),
            mixture=mixture,
            temperature=float(temperature),
            graph_weight=float(graph_weight),
            adversarial_weight=float(adversarial_weight),
            mmd_weight=float(mmd_weight),
            classification_weight=float(classification_weight),
            align_weight=float(align_weight),
            modality_dropout=float(modality_dropout),
            kl_warmup=int(kl_warmup),
            encode_batch=bool(encode_batch),
            discriminator_lr=float(discriminator_lr),
            modality_weights=dict(modality_weights or {}),
        )
        self.graph = (
            saved["graph"] if "graph" in saved else _guidance_graph(mdata, self.data, graph_key)
        )
        torch.manual_seed(int(random_state))
        self.module = MosaicModule(self.data, self.config, graph=self.graph)
        self.is_trained = False
        self.fit_result: FitResult | None = None
        self.train_params: dict[str, Any] = {}

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
        labelled_per_batch: int = 32,
        balance_batches: bool = True,
        checkpoint_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        device: str = "auto",
        random_state: int | None = None,
        num_threads: int | None = None,
        progress: bool | None = None,
    ) -> FitResult:
        """Fit the model with Lightning (:func:`cellweave.train.fit`).

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
        labelled_per_batch
            Labelled cells added to every step (semi-supervised mode).
        balance_batches
            Draw every epoch's cells with equal shares per batch (in memory only).
        checkpoint_dir, resume
            Write ``last.ckpt`` there after every epoch; ``resume=True`` continues from it.
        device
            ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        random_state
            Seed of the split, the sampling and the training (default: the model's).
        num_threads
            torch CPU threads during training.
        progress
            Show a progress bar (default: on an interactive terminal).
        """
        seed = int(self.init_params["random_state"] if random_state is None else random_state)
        if batch_size is None:
            batch_size = int(np.clip(self.data.n_cells // 16, 64, 512))
        rng = np.random.default_rng(seed)
        data, module = self.data, self.module
        if data.backed:  # stream blocks of consecutive cells from disk
            block = max(1, int(batch_size) // 8)
            units = blocks(np.arange(data.n_cells), block)
            n_val = round(float(validation_fraction) * units.shape[0])
            order = torch.as_tensor(rng.permutation(units.shape[0]))
            module.train_units = units[torch.sort(order[n_val:]).values]
            module.val_units = units[torch.sort(order[:n_val]).values]
            train_cells = module.train_units[module.train_units >= 0].numpy()
            module.table_fn = None
            step_units, val_step = 8, 8
        else:
            train_cells, val_cells = split_cells(
                data.batch_codes, float(validation_fraction), rng, min_cells=2
            )
            if balance_batches and len(data.batch_names) > 1:
                codes = data.batch_codes
                module.table_fn = lambda epoch: balanced_table(train_cells, codes, seed, epoch)
                module.train_units = module.table_fn(0)
            else:
                module.table_fn = None
                module.train_units = torch.as_tensor(train_cells).unsqueeze(1)
            module.val_units = torch.as_tensor(val_cells).unsqueeze(1)
            step_units, val_step = int(batch_size), 4096
        labelled = np.intersect1d(np.flatnonzero(data.label_codes >= 0), train_cells)
        module.labelled = torch.as_tensor(labelled, dtype=torch.long)
        module.n_labelled_per_batch = int(labelled_per_batch) if labelled.size else 0
        module.lr = float(lr)
        n_val = int(module.val_units.shape[0])
        start = time.perf_counter()
        result = fit(
            module,
            n_train=int(module.train_units.shape[0]),
            n_val=n_val if n_val else None,
            batch_size=step_units,
            val_batch_size=val_step,
            max_epochs=int(max_epochs),
            early_stopping=bool(early_stopping),
            patience=int(patience),
            device=device,
            seed=seed,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            progress=progress,
            num_threads=num_threads,
        )
        module.eval()
        self.is_trained = True
        self.fit_result = result
        self.train_params = _jsonable(
            {
                "max_epochs": max_epochs,
                "batch_size": batch_size,
                "lr": lr,
                "validation_fraction": validation_fraction,
                "early_stopping": early_stopping,
                "patience": patience,
                "labelled_per_batch": labelled_per_batch,
                "balance_batches": balance_batches,
                "device": result.device,
                "random_state": seed,
                "epochs": len(result.epochs),
                "best_epoch": result.best_epoch,
                "seconds": time.perf_counter() - start,
            }
        )
        return result

    # ------------------------------------------------------------------ outputs
    def _check_trained(self) -> None:
        if not self.is_trained:
            raise InputError("the model is not trained: call model.train() (or load a saved model)")

    def _chunks(self, cells: np.ndarray | None, size: int = 4096):
        cells = np.arange(self.data.n_cells) if cells is None else np.asarray(cells)
        for start in range(0, cells.size, size):
            yield torch.as_tensor(cells[start : start + size], dtype=torch.long)

    @torch.no_grad()
    def _infer_all(self, cells: np.ndarray | None = None, *, mask=None) -> dict[str, np.ndarray]:
        self._check_trained()
        self.module.eval()
        parts: dict[str, list[np.ndarray]] = {}
        for chunk in self._chunks(cells):
            out = self.module.infer(chunk, mask=mask)
            for k, v in out.items():
                parts.setdefault(k, []).append(v.cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}

    def get_latent_representation(self, *, cells: np.ndarray | None = None) -> np.ndarray:
        """Posterior means of ``z``, ``(n_cells, n_latent)`` float32 (``cells``: indices)."""
        return self._infer_all(cells)["mean"].astype(np.float32)

    def get_cluster_probabilities(self) -> np.ndarray:
        """``q(c | z)`` at the posterior mean, ``(n_cells, n_clusters)``."""
        logits = self._infer_all()["logits"]
        return _softmax(logits)

    def get_attention(self) -> pd.DataFrame:
        """Per-cell fusion weights over the modalities (0 for those a cell lacks)."""
        att = self._infer_all()["attention"]
        return pd.DataFrame(att, index=self.data.obs_names, columns=self.data.names)

    def predict_labels(self, *, return_probabilities: bool = False):
        """Predicted label per cell (argmax of ``q(c | z)`` over the label classes; without
        labels, the cluster ``"cluster_<k>"``).

        Returns
        -------
        A Series of labels, and with ``return_probabilities`` also a DataFrame cells x
        classes (rows sum to 1).
        """
        labels, probs = self._labels_from_logits(self._infer_all()["logits"])
        if return_probabilities:
            return labels, probs
        return labels

    def _labels_from_logits(self, logits: np.ndarray) -> tuple[pd.Series, pd.DataFrame]:
        """:meth:`predict_labels` (labels and probabilities) from cluster logits of all cells."""
        classes = self.data.label_classes
        if classes:
            probs = _softmax(logits[:, : len(classes)])
            names = list(classes)
        else:
            probs = _softmax(logits)
            names = [f"cluster_{k}" for k in range(probs.shape[1])]
        labels = pd.Series(
            pd.Categorical(np.asarray(names)[probs.argmax(1)], categories=names),
            index=self.data.obs_names,
        )
        return labels, pd.DataFrame(probs, index=self.data.obs_names, columns=names)

    def impute_modality(
        self,
        modality: str,
        *,
        cells: str | np.ndarray = "missing",
        transform_batch: str | None = None,
        library_size: float | None = None,
        use_modalities: Sequence[str] | None = None,
    ):
        """Expected values of ``modality`` for cells (by default those that lack it).

        Parameters
        ----------
        modality
            Modality to generate.
        cells
            ``"missing"`` (cells without the modality), ``"all"``, or cell indices.
        transform_batch
            Batch whose decoder parameters (scale, bias) are used; default: the batch with
            the most cells measuring the modality.
        library_size
            Library size of the output (NB: counts per cell; default the median library of
            the cells measuring it, except protein, whose decoder predicts each cell's total
            itself); ignored for Bernoulli (open probabilities).
        use_modalities
            Modalities the encoder may use (default: all a cell measured); e.g. leave out the
            modality itself to score held-out imputation.

        Returns
        -------
        AnnData (cells x the modality's model features) with the expected values in ``X``.
        """
        self._check_trained()
        return _impute(
            self,
            modality,
            cells=cells,
            transform_batch=transform_batch,
            library_size=library_size,
            use_modalities=use_modalities,
        )

    def differential(
        self,
        groupby: str | np.ndarray | pd.Series,
        group1: str | Sequence[str],
        group2: str | Sequence[str] | None = None,
        *,
        modality: str | None = None,
        mode: str = "change",
        delta: float = 0.25,
        n_samples: int = 5000,
        fdr: float = 0.05,
        transform_batch: str | None = None,
        random_state: int = 0,
    ) -> pd.DataFrame:
        """Differential expression/accessibility between two groups of cells with Bayes
        factors (scVI-style), see :func:`cellweave.mosaic.analysis.differential`."""
        self._check_trained()
        return _differential(
            self,
            groupby,
            group1,
            group2,
            modality=modality,
            mode=mode,
            delta=delta,
            n_samples=n_samples,
            fdr=fdr,
            transform_batch=transform_batch,
            random_state=random_state,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model to the folder ``path``: ``model.json`` (init parameters, features,
        batches, classes), ``representation.npz``, ``graph.npz`` and ``weights.pt``."""
        self._check_trained()
        path = Path(path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise FileFormatError(f"{path} exists and is not empty: pass overwrite=True")
        path.mkdir(parents=True, exist_ok=True)
        fitted = self.data.fitted_state()
        arrays = {
            f"{mod}/{key}": value
            for mod, info in fitted.items()
            for key, value in info.pop("arrays").items()
        }
        meta = {
            "format": _FORMAT,
            "cellweave_version": __version__,
            "init_params": self.init_params,
            "train_params": self.train_params,
            "batch_names": self.data.batch_names,
            "label_classes": self.data.label_classes,
            "fitted": fitted,
        }
        (path / _META).write_text(json.dumps(meta, indent=1))
        np.savez(path / _ARRAYS, **arrays)
        graph = self.graph if self.graph is not None else sparse.csr_matrix((0, 0))
        sparse.save_npz(path / _GRAPH, sparse.csr_matrix(graph))
        torch.save(self.module.state_dict(), path / _WEIGHTS)
        return path

    @classmethod
    def load(cls, path: str | Path, mdata: Any, *, modality: str | None = None) -> MosaicModel:
        """Load a model saved with :meth:`save` and attach it to ``mdata`` (same features and
        batches; labels, if any, among the saved classes)."""
        path = Path(path)
        for name in (_META, _ARRAYS, _GRAPH, _WEIGHTS):
            if not (path / name).exists():
                raise FileFormatError(f"{path / name} is missing: {path} is not a saved model")
        meta = json.loads((path / _META).read_text())
        if meta.get("format", 1) != _FORMAT:
            raise FileFormatError(
                f"{path} holds a model of format {meta.get('format', 1)} (cellweave "
                f"{meta.get('cellweave_version', '?')}); this cellweave reads format {_FORMAT}: "
                "train the model again"
            )
        with np.load(path / _ARRAYS) as npz:
            arrays = {k: npz[k] for k in npz.files}
        fitted = meta["fitted"]
        for mod, info in fitted.items():
            prefix = f"{mod}/"
            info["arrays"] = {
                k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)
            }
        graph = sparse.load_npz(path / _GRAPH)
        params = dict(meta["init_params"])
        if modality is not None:
            params["modality"] = modality
        params["modalities"] = list(fitted)
        for key in ("encoder_hidden", "decoder_hidden"):
            params[key] = tuple(params[key])
        saved = {
            "fitted": fitted,
            "batch_names": meta["batch_names"],
            "label_classes": meta["label_classes"],
            "graph": graph if graph.shape[0] else None,
        }
        params.pop("graph_key", None)
        label_key = params.get("label_key")
        if label_key is not None and label_key not in mdata.obs.columns:
            params["label_key"] = None  # query data without labels: predict the saved classes
        model = cls(mdata, _saved=saved, **params)
        state = torch.load(path / _WEIGHTS, map_location="cpu", weights_only=True)
        model.module.load_state_dict(state)
        model.module.eval()
        model.is_trained = True
        model.init_params = meta["init_params"]
        model.train_params = meta.get("train_params", {})
        return model


def _widths(value: Any) -> tuple[int, ...]:
    """Hidden widths from an int, a sequence, or a string like ``"128,64"`` (CLI)."""
    if isinstance(value, int | np.integer):
        return (int(value),)
    if isinstance(value, str):
        return tuple(int(v) for v in value.split(",") if v.strip())
    return tuple(int(v) for v in value)


def _softmax(logits: np.ndarray) -> np.ndarray:
    x = logits - logits.max(1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(1, keepdims=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | range):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
