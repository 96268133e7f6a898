"""Architecture surgery for query mapping: a module with rows for new batches takes a
reference module's weights; only the new entries learn unless the reference is unfrozen.

The module of a query model is built with every batch (the reference's, then the query's),
so its batch-specific tensors are larger than the reference's along one axis: decoder rows
(scale, bias, dispersion, ...) and the discriminator's outputs along axis 0, the batch
one-hot columns of the encoders (``encode_batch``) along axis 1. :func:`merge_state` copies
the reference's block, starts new rows at the mean of the reference rows and new columns at
zero, and returns per parameter the mask of entries that are new.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

__all__ = [
    "add_input_shift",
    "freeze",
    "mask_features",
    "measured_batches",
    "merge_state",
    "start_from_measured",
]

#: Decoder bias of a feature the query did not measure (``sigmoid``/``softmax`` mass ~0).
MASKED_BIAS = -30.0


def add_input_shift(
    module: nn.Module, n_inputs: list[int], n_reference: int
) -> dict[str, torch.Tensor]:
    """Give ``module`` a per-batch shift of each encoder's input (``module.input_shift``,
    zero; ``n_inputs``: each modality's input width); returns the masks of the entries that
    learn (the query batches' rows)."""
    module.input_shift = nn.ParameterList(
        nn.Parameter(torch.zeros(module.n_batches, n)) for n in n_inputs
    )
    masks = {}
    for i, p in enumerate(module.input_shift):
        mask = torch.zeros_like(p, dtype=torch.bool)
        mask[n_reference:] = True
        masks[f"input_shift.{i}"] = mask
    return masks


def merge_state(
    module: nn.Module, reference: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Copy ``reference`` (a state dict of the same architecture with fewer batches) into
    ``module``; returns ``{name: mask}`` of the parameters' entries that are not the
    reference's (new batch rows or columns, or tensors the reference lacks)."""
    masks: dict[str, torch.Tensor] = {}
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            ref = reference.get(name)
            new = torch.ones_like(tensor, dtype=torch.bool)
            if ref is None:
                if name in params:
                    masks[name] = new
                continue
            ref = ref.to(tensor.dtype)
            if ref.shape == tensor.shape:
                tensor.copy_(ref)
                new.zero_()
            else:
                _copy_block(tensor, ref, new)
            if name in params:
                masks[name] = new
    return masks


def _copy_block(tensor: torch.Tensor, ref: torch.Tensor, new: torch.Tensor) -> None:
    """``ref`` into the leading block of ``tensor``; new rows (axis 0) start at the mean of
    the reference rows, new columns (axis 1) at zero; ``new`` marks what is not ``ref``."""
    if ref.dim() != tensor.dim() or any(
        r > t for r, t in zip(ref.shape, tensor.shape, strict=True)
    ):
        raise ValueError(f"reference tensor {tuple(ref.shape)} does not fit {tuple(tensor.shape)}")
    block = tuple(slice(0, n) for n in ref.shape)
    tensor.zero_()
    if ref.shape[0] < tensor.shape[0] and ref.shape[1:] == tensor.shape[1:]:
        tensor[ref.shape[0] :] = ref.mean(0, keepdim=True)
    tensor[block] = ref
    new[block] = False


def mask_features(
    module: nn.Module, observed: Mapping[int, np.ndarray], n_reference: int
) -> dict[str, torch.Tensor]:
    """Fix the query batches' decoder bias of the features they did not measure at
    :data:`MASKED_BIAS` (no likelihood mass); ``observed``: modality index -> bool mask over
    its features. Returns ``{name: mask}`` of the entries that must never learn."""
    fixed = {}
    with torch.no_grad():
        for i, seen in observed.items():
            missing = torch.as_tensor(~np.asarray(seen, dtype=bool))
            if not bool(missing.any()):
                continue
            bias = module.decoders[i].bias
            bias[n_reference:, missing] = MASKED_BIAS
            mask = torch.zeros_like(bias, dtype=torch.bool)
            mask[n_reference:, missing] = True
            fixed[f"decoders.{i}.bias"] = mask
    return fixed


def freeze(
    module: nn.Module,
    masks: Mapping[str, torch.Tensor],
    fixed: Mapping[str, torch.Tensor],
    *,
    unfrozen: bool,
) -> int:
    """Let only the entries of ``masks`` learn (the gradients of the others are zeroed by a
    hook, so Adam leaves them bit-equal); ``unfrozen``: every entry learns. The entries of
    ``fixed`` never learn. Returns the number of learning entries."""
    n = 0
    for name, p in module.named_parameters():
        if unfrozen:
            learn = torch.ones_like(p, dtype=torch.bool)
        else:
            learn = masks.get(name, torch.zeros_like(p, dtype=torch.bool)).clone()
        if name in fixed:
            learn &= ~fixed[name]
        count = int(learn.sum())
        p.requires_grad_(count > 0)
        if 0 < count < p.numel():
            weight = learn.to(p.dtype)
            p.register_hook(lambda g, w=weight: g * w.to(g.device))
        n += count
    return n


def measured_batches(reference: Mapping[str, torch.Tensor], n_decoders: int) -> list[np.ndarray]:
    """Per decoder (modality), which reference batches measured it, read from the weights: a
    batch that never measured a modality never trained its decoder rows, so its ``scale`` row
    is still the constant it started at (:class:`~.modules.HybridDecoder`); a trained row is
    not constant. A decoder with a single feature counts every batch as measured."""
    out = []
    for i in range(n_decoders):
        scale = reference[f"decoders.{i}.scale"]
        varied = (scale.amax(1) > scale.amin(1)).cpu().numpy()
        out.append(varied if scale.shape[1] > 1 and varied.any() else np.ones_like(varied))
    return out


def start_from_measured(
    module: nn.Module, reference: Mapping[str, torch.Tensor], n_reference: int
) -> None:
    """Start the query batches' decoder rows at the mean of the rows of the reference batches
    that measured the modality (:func:`measured_batches`) instead of all reference rows: a
    batch that lacked the modality holds untrained rows (e.g. an RNA-only query of a
    reference with an ATAC-only batch), which pull the start off the trained ones."""
    measured = measured_batches(reference, len(module.decoders))
    with torch.no_grad():
        for i, rows in enumerate(measured):
            if rows.all():
                continue
            keep = torch.as_tensor(np.flatnonzero(rows))
            for name, p in module.decoders[i].named_parameters():
                ref = reference.get(f"decoders.{i}.{name}")
                if ref is None or ref.dim() != 2 or ref.shape[0] != n_reference:
                    continue
                if p.shape[0] > n_reference and p.shape[1:] == ref.shape[1:]:
                    p[n_reference:] = ref[keep].to(p.dtype).mean(0, keepdim=True)
