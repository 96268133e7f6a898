"""Layers reused across models: a configurable MLP and a gradient-reversal layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

__all__ = ["MLP", "GradientReversal", "grad_reverse"]

Norm = Literal["layer", "batch"] | None

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """Stack of ``Linear -> norm -> activation -> dropout`` blocks and a final ``Linear``.

    Parameters
    ----------
    n_in
        Input features.
    hidden
        Widths of the hidden layers (empty: a single linear map).
    n_out
        Output features.
    norm
        ``"layer"`` (LayerNorm, default: independent of the batch), ``"batch"`` or ``None``.
    dropout
        Dropout probability after each hidden activation.
    activation
        ``"relu"``, ``"gelu"``, ``"elu"`` or ``"tanh"``.
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        *,
        norm: Norm = "layer",
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if norm not in ("layer", "batch", None):
            raise ValueError(f"norm={norm!r}; choose 'layer', 'batch' or None")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = n_in
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if norm == "layer":
                layers.append(nn.LayerNorm(size))
            elif norm == "batch":
                layers.append(nn.BatchNorm1d(size))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-scale`` backward (adversarial training)."""
    return _ReverseGrad.apply(x, scale)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.scale)


def take_rows(table: torch.Tensor, index: torch.Tensor | int) -> torch.Tensor:
    """``table[index]`` for a 2-D ``table`` (e.g. per-batch parameters, one row per cell):
    with a tensor ``index`` through ``F.embedding``, whose backward sums repeated rows in a
    fixed order (advanced indexing accumulates them in thread order, so two runs with one
    seed differed on two threads)."""
    if isinstance(index, torch.Tensor) and index.ndim > 0:
        return torch.nn.functional.embedding(index, table)
    return table[index]
