"""The options of the attention mapper, declared once: the model class checks its
arguments against them and the ``"attention"`` solver of ``map_cells`` declares them."""

from __future__ import annotations

from ...registry import Bool, Choice, Float, Int, Method, Option, Registry, Text

__all__ = ["MODEL", "MODEL_OPTIONS", "NO_TYPES_ENTROPY", "TRAIN_OPTIONS"]

#: ``entropy=None`` for values that are not counts (intensities) mapped without cell types:
#: the attention over candidate cells is then the whole composition, and a maximum-entropy
#: prior (as entropic OT's) pools the cells that explain a spot alike instead of fitting a
#: few noisy ones (BDTNP gene CV: median PCC / SSIM 0.526 / 0.411 -> 0.584 / 0.432).
NO_TYPES_ENTROPY = 3.0
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
        0.5,
        low=0,
        high=1,
        doc="shrink cell profiles toward their type mean (with cell_type_key only)",
    ),
    Bool("prior", False, doc="add the spot-cell panel similarity to the attention logits"),
    Float("lambda_cells", 1.0, low=0, doc="weight of the reference cells' type loss"),
    Float(
        "entropy",
        None,
        low=0,
        allow_none=True,
        doc="weight of the attention's entropy within types; None: "
        f"{NO_TYPES_ENTROPY} for values that are not counts mapped without cell types, else 0",
    ),
    Int("refine_steps", 50, low=0, doc="per-spot refinement steps of the type weights"),
    Float("refine_penalty", 0.01, low=0, doc="L2 weight keeping refinements near the encoder"),
    Bool("refine_cells", False, doc="also refine the attention within types"),
)
#: Options of :meth:`~.model.AttentionMapper.train`.
TRAIN_OPTIONS: tuple[Option, ...] = (
    Int("max_epochs", 30, low=1),
    Int("batch_size", 128, low=1, allow_none=True),
    Float("lr", 1e-2, low=0, low_open=True),
)
#: The model's options as one registry entry (for their checks).
MODEL: Method = Registry("attention mapper").add(
    "attention", None, kind="model", description="", options=(*MODEL_OPTIONS, *TRAIN_OPTIONS)
)
