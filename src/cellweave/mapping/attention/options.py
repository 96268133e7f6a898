"""The options of the attention mapper, declared once: the model class checks its
arguments against them and the ``"attention"`` solver of ``map_cells`` declares them."""

from __future__ import annotations

from ...registry import Bool, Choice, Float, Int, Method, Option, Registry, Text

__all__ = [
    "MAX_EPOCHS",
    "MIN_EPOCHS",
    "MIN_HELD_OUT",
    "MODEL",
    "MODEL_OPTIONS",
    "NO_TYPES_ENTROPY",
    "NO_TYPES_TRANSPORT",
    "PATIENCE",
    "PSEUDO_CELLS",
    "PSEUDO_DEPTHS",
    "PSEUDO_EPOCHS",
    "PSEUDO_SPOTS",
    "TRAIN_OPTIONS",
    "TRANSPORT_EPSILON",
    "TRANSPORT_NEIGHBOURS",
    "VALIDATION",
]

#: A fraction of the spots to hold out with the train option ``validation`` (the
#: benchmarks' ``attention_validation``): training then stops when their likelihood stops
#: improving (the best weights kept). Not the default (``validation=0``): on MOp
#: pseudo-spots (15 types, ~1,000 counts per spot, 3 seeds) it helps much (RMSE 0.131 ->
#: 0.119, per-type Pearson 0.33 -> 0.44), but on the simulator it trains longer than the
#: fractions like (RMSE 0.068 -> 0.073), and on MERFISH genes 200 epochs lower the median
#: PCC (0.250 -> 0.210).
VALIDATION = 0.1
#: Epochs without improvement of the held-out spots' likelihood before the training stops.
PATIENCE = 10
#: Fewest held-out spots that validate (fewer: no validation, :data:`MIN_EPOCHS` epochs).
MIN_HELD_OUT = 5
#: Epochs without validation, and the most epochs with it (``max_epochs=None``).
MIN_EPOCHS, MAX_EPOCHS = 30, 300

#: ``entropy=None`` for values that are not counts (intensities) mapped without cell types:
#: the attention over candidate cells is then the whole composition, and a maximum-entropy
#: prior (as entropic OT's) pools the cells that explain a spot alike instead of fitting a
#: few noisy ones (BDTNP gene CV: median PCC / SSIM 0.526 / 0.411 -> 0.584 / 0.432).
NO_TYPES_ENTROPY = 3.0
#: ``transport=None`` without cell types (gene prediction): the share of the entropic OT plan
#: on the candidates (:mod:`.transport`) mixed into the attention, which, like ``method="ot"``,
#: balances the mass over the cells; with ``entropy_reference="transport"`` (its default
#: without types: BDTNP's entropy term pulls toward that plan, not toward uniform). Gene CV
#: medians, normalized, mean of model seeds 0-2 (with the defaults below): MERFISH 0.238 /
#: 0.183 -> 0.247 / 0.179 (``ot`` 0.246 / 0.172), BDTNP 0.584 / 0.432 -> 0.606 / 0.443
#: (``ot`` 0.597 / 0.441), and far less seed spread (benchmarks/results/mapping.md).
#: With cell types: 0 (the fractions are the attention's, unchanged).
NO_TYPES_TRANSPORT = 0.25
#: Entropic regularization of that plan (``method="ot"`` uses 0.15 on its own features).
TRANSPORT_EPSILON = 0.1
#: Weight of the neighbour view in the plan's spot features (the spatial context enters
#: the plan's cost). Seed 0, plan mixed at 0.25: BDTNP thinned to 30 counts per spot
#: 0.305 / 0.270 -> 0.331 / 0.292; clean BDTNP 0.6005 / 0.4454 -> 0.6014 / 0.4459; MERFISH
#: 0.2510 / 0.1794 -> 0.2503 / 0.1814 (the plan alone on thinned BDTNP: 0.378 -> 0.456).
TRANSPORT_NEIGHBOURS = 0.3
#: Most reference cells pooled into one pseudo-spot (option ``pseudo_spots``).
PSEUDO_CELLS = 10
#: ``pseudo_spots=None``: this many labelled pseudo-spots (training then runs
#: :data:`PSEUDO_EPOCHS` epochs) when the rarest cell type's reference cells hold fewer counts
#: together than :data:`PSEUDO_DEPTHS` median spots. Its type profile is then mostly
#: sampling noise, and a spot likelihood that takes the profiles as exact is misled (MOp
#: pseudo-spots, 4 Endo cells of 160 counts vs ~1,000 counts per spot); a classifier of
#: pooled reference cells at the spots' depth learns with that noise. With well-measured
#: types (the simulator) the likelihood alone is better and no type loss is used (see
#: benchmarks/results/mapping.md, deconvolution notes).
PSEUDO_SPOTS, PSEUDO_DEPTHS, PSEUDO_EPOCHS = 4000, 10.0, 100
#: Options of :class:`~.model.AttentionMapper` itself.
MODEL_OPTIONS: tuple[Option, ...] = (
    Int("n_latent", 32, low=2),
    Int("n_hidden", 128, low=1),
    Int("top_k", 50, low=0, allow_none=True, doc="candidate cells per spot; 0/None: all"),
    Text("spatial_key", "spatial", allow_none=True, doc="None: no neighbour/histology view"),
    Text("modality_key", None, allow_none=True, doc="obsm key of another modality"),
    Bool("histology", True, doc="use the image in uns['spatial'] when present"),
    Option("ring_weights", object, (1.0, 0.5), doc="weights of order-1, order-2 neighbours"),
    Bool("platform_factor", True, doc="learn a per-gene platform factor"),
    Choice(
        "likelihood",
        "nb",
        ("nb", "poisson", "gaussian"),
        doc="gaussian: on spot-normalized values, for values that are not counts",
    ),
    Choice(
        "profiles", "normalized", ("counts", "normalized"), doc="mix cells' counts or compositions"
    ),
    Float(
        "shrink",
        1.0,
        low=0,
        high=1,
        doc="shrink cell profiles toward their type mean (with cell_type_key only)",
    ),
    Bool("prior", False, doc="add the spot-cell panel similarity to the attention logits"),
    Float(
        "lambda_cells",
        None,
        low=0,
        allow_none=True,
        doc="weight of the labelled rows' type loss; None: 1 with pseudo-spots, else 0",
    ),
    Int(
        "pseudo_spots",
        None,
        low=0,
        allow_none=True,
        doc="labelled spots pooled from 1-10 reference cells (0: the cells themselves); None: "
        f"{PSEUDO_SPOTS} when a cell type's reference counts are below "
        f"{PSEUDO_DEPTHS} spots' depth, else 0",
    ),
    Float(
        "entropy",
        None,
        low=0,
        allow_none=True,
        doc="weight of the attention's entropy within types; None: "
        f"{NO_TYPES_ENTROPY} for values that are not counts mapped without cell types, else 0",
    ),
    Choice(
        "entropy_reference",
        None,
        ("uniform", "transport"),
        allow_none=True,
        doc="the entropy term: uniform (maximum entropy) or relative to the OT plan; None: "
        "'transport' without cell types, else 'uniform'",
    ),
    Float(
        "transport",
        None,
        low=0,
        high=1,
        allow_none=True,
        doc=f"share of the OT plan mixed into the attention; None: {NO_TYPES_TRANSPORT} "
        "without cell types, else 0",
    ),
    Float(
        "transport_epsilon",
        TRANSPORT_EPSILON,
        low=0,
        low_open=True,
        doc="entropic regularization of the OT plan (cosine cost)",
    ),
    Float(
        "transport_neighbours",
        TRANSPORT_NEIGHBOURS,
        low=0,
        high=1,
        doc="weight of the neighbour view in the OT plan's spot features",
    ),
    Int("refine_steps", 50, low=0, doc="per-spot refinement steps of the type weights"),
    Float("refine_penalty", 0.01, low=0, doc="L2 weight keeping refinements near the encoder"),
    Bool("refine_cells", False, doc="also refine the attention within types"),
    Bool(
        "reliability",
        True,
        doc="shrink each type's fractions toward their mean by 1 - its leave-one-out recall "
        "in the reference (with cell types)",
    ),
)
#: Options of :meth:`~.model.AttentionMapper.train`.
TRAIN_OPTIONS: tuple[Option, ...] = (
    Int(
        "max_epochs",
        None,
        low=1,
        allow_none=True,
        doc="None: 300 with validation (early stopping), else 30",
    ),
    Int("batch_size", 128, low=1, allow_none=True),
    Float("lr", 1e-2, low=0, low_open=True),
    Float("validation", 0.0, low=0, high=0.5, doc="held-out spots to stop on; 0: none"),
)
#: The model's options as one registry entry (for their checks).
MODEL: Method = Registry("attention mapper").add(
    "attention", None, kind="model", description="", options=(*MODEL_OPTIONS, *TRAIN_OPTIONS)
)
