"""The mosaic model's options, declared once with their types and ranges.

:data:`MODEL` (a :class:`cellweave.registry.Method`) lists every keyword option of
:class:`~.model.MosaicModel` apart from the data keys (``batch_key``, ``label_key``,
``graph_key``, ``modality``); :func:`check_options` refuses an unknown or
ill-typed one with one :class:`~cellweave.errors.InvalidOptionError` naming the valid ones,
before any work; :func:`choose_n_clusters` gives the default ``n_clusters`` without labels.
The architecture and loss options build :class:`MosaicConfig` by name
(:meth:`MosaicConfig.from_options`); the data options go to
:meth:`~.data.MosaicData.from_mudata`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import InvalidOptionError
from ..registry import Bool, Choice, Float, Int, Method, Option
from .clusters import best_kmeans_k
from .data import MosaicData

__all__ = [
    "DATA_OPTIONS",
    "MODEL",
    "TRAIN",
    "MosaicConfig",
    "check_options",
    "check_train_options",
    "choose_n_clusters",
    "resolve_mixture",
]


@dataclass
class MosaicConfig:
    """Architecture and loss weights of :class:`~.vae.MosaicModule` (see its module
    docstring); the defaults are those of :data:`MODEL`."""

    n_latent: int = 20
    n_clusters: int = 10
    n_continuous: int = 2
    encoder_hidden: Sequence[int] = (256,)
    n_embedding: int = 128
    dropout: float = 0.1
    decoder_hidden: Sequence[int] = (64,)
    mixture: str = "auto"
    temperature: float = 0.5
    graph_weight: float = 0.5
    graph_samples: int = 4096
    adversarial_weight: float = 0.05
    mmd_weight: float = 0.3
    classification_weight: float = 0.5
    align_weight: float = 0.1
    modality_dropout: float = 0.3
    kl_warmup: int = 5
    cluster_warmup: int = 5
    cluster_refit: int = 1
    max_decoded_features: int | None = 8192
    encode_batch: bool = False
    discriminator_lr: float = 5.0
    modality_weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MosaicConfig:
        """The config from checked options (:func:`check_options`); fields not given keep
        their defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names and v is not None})

    def to_dict(self) -> dict:
        out = asdict(self)
        out["encoder_hidden"] = list(self.encoder_hidden)
        out["decoder_hidden"] = list(self.decoder_hidden)
        return out


_D = MosaicConfig()
_ANY = dict(allow_none=True)

#: Options of the data (modalities, likelihoods, representations; see
#: :meth:`~.data.MosaicData.from_mudata`), checked there.
DATA_OPTIONS: tuple[Option, ...] = (
    Option("modalities", object, None, **_ANY, doc="modalities to use (default all)"),
    Option("modality_types", object, None, **_ANY, doc="modality name -> kind"),
    Option("likelihoods", object, None, **_ANY, doc="count likelihood per modality"),
    Option("representations", object, None, **_ANY, doc="encoder input per modality"),
    Option("max_features", object, None, **_ANY, doc="most variable features kept"),
    Int("n_comps", None, low=1, allow_none=True, doc="components of the pca/lsi inputs"),
    Option("label_classes", object, None, **_ANY, doc="the known label classes"),
)

_MODEL_OPTIONS: tuple[Option, ...] = (
    Int("n_latent", _D.n_latent, low=1, doc="dimension of the latent space"),
    Int("n_clusters", None, low=1, allow_none=True, doc="clusters of the mixture prior"),
    Int("n_continuous", _D.n_continuous, low=0, doc="within-cluster continuous dimensions"),
    Choice(
        "mixture",
        _D.mixture,
        ("auto", "exact", "gumbel", "marginal"),
        doc="how the prior sums clusters (auto: marginal without labels, exact with)",
    ),
    Option("encoder_hidden", object, _D.encoder_hidden, doc="encoder hidden widths"),
    Int("n_embedding", _D.n_embedding, low=1, doc="modality embedding width"),
    Option("decoder_hidden", object, _D.decoder_hidden, doc="decoder widths (empty: linear)"),
    Float("dropout", _D.dropout, low=0.0, high=1.0, high_open=True, doc="encoder dropout"),
    Float("graph_weight", _D.graph_weight, low=0.0, doc="guidance graph loss weight"),
    Float("adversarial_weight", _D.adversarial_weight, low=0.0, doc="batch adversary"),
    Float("mmd_weight", _D.mmd_weight, low=0.0, doc="batch MMD weight"),
    Float("classification_weight", _D.classification_weight, low=0.0, doc="label loss"),
    Float("align_weight", _D.align_weight, low=0.0, doc="cross-modality alignment"),
    Float("modality_dropout", _D.modality_dropout, low=0, high=1, high_open=True, doc="hide"),
    Int("kl_warmup", _D.kl_warmup, low=0, doc="epochs of the KL warm-up"),
    Int("cluster_warmup", _D.cluster_warmup, low=0, doc="epochs before the mixture is fit"),
    Int("cluster_refit", _D.cluster_refit, low=0, doc="epochs between refits (0: once)"),
    Bool("encode_batch", _D.encode_batch, doc="batch one-hot into the encoders"),
    Float("discriminator_lr", _D.discriminator_lr, low=0.0, doc="adversary lr factor"),
    Option("modality_weights", object, None, **_ANY, doc="likelihood weight per modality"),
    Float("temperature", _D.temperature, low=1e-6, doc="Gumbel-softmax temperature"),
    Int("random_state", 0, low=0, high=2**32 - 1, doc="seed of subsamples, weights, training"),
)

#: The numeric options of :meth:`~.model.MosaicModel.train` (and of ``integrate``), with
#: their ranges; the others (``checkpoint_dir``, ``resume``, ``device``, ``progress``) are
#: checked where they are used.
TRAIN = Method(
    "MosaicModel.train",
    "training",
    None,
    "options of MosaicModel.train",
    {
        option.name: option
        for option in (
            Int("max_epochs", 100, low=1, doc="passes over the training cells at most"),
            Int("batch_size", None, low=1, allow_none=True, doc="cells per step"),
            Float("lr", 2e-3, low=0, low_open=True, doc="Adam learning rate"),
            Float("validation_fraction", 0.1, low=0, high=1, high_open=True, doc="held out"),
            Int("patience", 8, low=0, doc="epochs without improvement before stopping"),
            Int("labelled_per_batch", 32, low=0, doc="labelled cells added to every step"),
            Int("random_state", None, low=0, high=2**32 - 1, allow_none=True, doc="seed"),
            Int("num_threads", None, low=1, allow_none=True, doc="torch CPU threads"),
        )
    },
    what="method",
)

#: Every option of :class:`~.model.MosaicModel` besides the data keys.
MODEL = Method(
    "MosaicModel",
    "model",
    None,
    "mosaic integration of RNA, ATAC and protein measured in any subset per batch",
    {option.name: option for option in (*_MODEL_OPTIONS, *DATA_OPTIONS)},
    what="model",
)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of :data:`MODEL` (defaults filled in), ``options`` checked and converted
    (hidden widths to tuples of ints, modality weights to a dict of numbers >= 0).

    Raises
    ------
    InvalidOptionError
        An unknown option, or a value of the wrong type or out of its range.
    """
    checked = {**MODEL.defaults(), **MODEL.check_options(options)}
    for key in ("encoder_hidden", "decoder_hidden"):
        checked[key] = _widths(checked[key], key)
    checked["modality_weights"] = _weights(checked["modality_weights"])
    return checked


def check_train_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The numeric training options of ``options`` (those :data:`TRAIN` declares; the
    others are left to their users) checked and converted, before any work.

    Raises
    ------
    InvalidOptionError
        ``max_epochs`` < 1, ``lr`` <= 0, NaN, ... (one line naming the valid range).
    """
    known = {k: v for k, v in options.items() if k in TRAIN.options}
    return TRAIN.check_options(known)


def _invalid(name: str, value: Any, expects: str) -> InvalidOptionError:
    return InvalidOptionError(f"model 'MosaicModel' option {name}={value!r} is invalid; {expects}")


def _widths(value: Any, name: str) -> tuple[int, ...]:
    """Hidden widths from an int, a sequence, or a string like ``"128,64"`` (CLI)."""
    expects = "pass widths >= 1 as an integer, a list or a string like '128,64'"
    try:
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            widths = (int(value),)
        elif isinstance(value, str):
            widths = tuple(int(v) for v in value.split(",") if v.strip())
        elif isinstance(value, Sequence):
            widths = tuple(_integer(v) for v in value)
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise _invalid(name, value, expects) from None
    if any(w < 1 for w in widths):
        raise _invalid(name, value, expects)
    return widths


def _integer(value: Any) -> int:
    if isinstance(value, bool) or float(value) != int(value):
        raise ValueError
    return int(value)


def _weights(value: Any) -> dict[str, float]:
    expects = "pass a mapping of modality names to numbers >= 0, e.g. {'atac': 0.5}"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _invalid("modality_weights", value, expects)
    out = {}
    for key, weight in value.items():
        try:
            number = float(weight)
        except (TypeError, ValueError):
            raise _invalid("modality_weights", value, expects) from None
        if isinstance(weight, bool) or not math.isfinite(number) or number < 0:
            raise _invalid("modality_weights", value, expects)
        out[str(key)] = number
    return out


def resolve_mixture(mixture: str, n_classes: int) -> str:
    """The mixture mode of ``mixture="auto"`` (others are returned as given).

    Without labels ``"marginal"``: the only mode whose prior finds the clusters itself
    (simulator ARI 0.87 with every type found against 0 for ``"exact"``; MOp 3,000 cells
    above k-means on the latent), integration scores within the seed spread. With label
    classes ``"exact"`` (unchanged): there the marginal mode is not better on every data set
    yet - from the 1% split it predicts the simulator's labels far better (balanced accuracy
    0.76 against 0.22-0.24) but MOp's worse (0.291 against 0.346), and it widens the seed
    spread of the differential test on the simulator's cells without RNA (Spearman
    0.685-0.782 against 0.708-0.721 over 5 seeds; ``benchmarks/results/mosaic_clusters.md``).
    """
    if mixture != "auto":
        return mixture
    return "exact" if n_classes else "marginal"


def choose_n_clusters(
    data: MosaicData, *, k_range: Sequence[int] = range(4, 31, 2), random_state: int = 0
) -> int:
    """Default number of clusters without labels: the ``k`` in ``k_range`` with the highest
    silhouette of k-means on the encoder inputs of the modality measured in most cells
    (3000 cells at most)."""
    from sklearn.metrics import silhouette_score

    m = max(data.modalities, key=lambda m: int(m.present.sum()))
    cells = np.flatnonzero(m.present)
    rng = np.random.default_rng(random_state)
    cells = np.sort(rng.choice(cells, min(3000, cells.size), replace=False))
    if m.inputs is not None:
        x = m.inputs[cells]
    else:
        x = m.representation.transform(m.read_counts(cells))
    ks = [k for k in k_range if k < cells.size]
    best = best_kmeans_k(x, ks, silhouette_score, n_init=2, random_state=random_state)
    return int(k_range[0]) if best is None else best
