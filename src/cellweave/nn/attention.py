"""Attention blocks shared by cellweave models."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GatedAttentionFusion"]


class GatedAttentionFusion(nn.Module):
    """Weights ``softmax_m(w . (tanh(A e_m) * sigmoid(B e_m)))`` over the present views
    (modalities of a cell, views of a spot) and the weighted sum of their embeddings ``e_m``
    (gated attention of Ilse et al. 2018, absent views masked out)."""

    def __init__(self, n_hidden: int, n_attention: int = 64) -> None:
        super().__init__()
        self.a = nn.Linear(n_hidden, n_attention)
        self.b = nn.Linear(n_hidden, n_attention)
        self.w = nn.Linear(n_attention, 1)

    def forward(self, e: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``e``: ``(B, M, H)`` embeddings; ``mask``: ``(B, M)`` bool, at least one per row.
        Returns the fused ``(B, H)`` and the weights ``(B, M)`` (0 where absent)."""
        score = self.w(torch.tanh(self.a(e)) * torch.sigmoid(self.b(e))).squeeze(-1)
        weight = torch.softmax(score.masked_fill(~mask, float("-inf")), dim=1)
        return (weight.unsqueeze(-1) * e).sum(1), weight
