"""The torch module of the attention mapper: view encoders, fusion, attention over cells,
count likelihood.

A spot's views are encoded each by its own MLP into the latent space and fused by
:class:`cellweave.nn.GatedAttentionFusion` (absent views masked): the fused vector is the
spot's **query** and its latent. Reference cells are encoded by the panel encoder (the one
that encodes a spot's own panel), so cells and spots share one latent space. The spot's
composition is two-level: type weights ``pi_st = softmax_t(W_type q_s)`` and, within each
type, attention ``softmax_c(<W_q q_s, W_k z_c> / sqrt(d))`` over the spot's candidate cells
of that type; ``a_sc = pi_s,type(c) * attention_sc`` sums to 1 over the candidates and
``sum_{c in t} a_sc = pi_st`` are the fractions. Expected counts are

``mu_sg = library_s * normalize_g(r_g * sum_c a_sc x~_cg)``

(``x~_c``: the cell's profile, by default its composition times its type's mean library so
that ``a_sc`` are cell-number fractions, optionally shrunk toward its type's pooled
composition; ``r_g``: a learned per-gene platform factor), under a negative binomial
(per-gene dispersion) or Poisson likelihood, or, for values that are not counts
(intensities), a Gaussian on the spot-normalized values (per-gene precision). Labelled rows
teach the type weights (soft cross-entropy, weight ``lambda_cells``): reference cells, each
seen as a one-cell spot through its panel, or pseudo-spots pooled from 1-10 reference cells
at the spots' depth, seen through the platform factor (:meth:`labelled_panel`); by default
pseudo-spots when a type's reference is shallow, else none (the likelihood alone). At
inference the type weights of every spot are refined on its counts for a few steps with the
weights frozen (:meth:`refine`, semi-amortized), which is what lets a new section map well
without retraining. The mapper then shrinks the fractions of a type its reference cannot
recognise toward their mean (:mod:`.reliability`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...nn import MLP, GatedAttentionFusion, nb_log_prob, poisson_log_prob, take_rows
from ...train import CellweaveModule
from .views import VIEWS

__all__ = ["AttentionModule"]

#: Spots encoded at once outside training.
_BLOCK = 1024


class AttentionModule(CellweaveModule):
    """Parameters and losses of the attention mapper (data kept on the module).

    Parameters
    ----------
    dims
        Input width of every view used (``"panel"`` first).
    n_genes, n_types
        Shared genes; cell types (1 without types).
    n_latent, n_hidden
        Latent and hidden widths of the encoders.
    likelihood
        ``"nb"``, ``"poisson"`` or ``"gaussian"`` (values that are not counts).
    platform_factor
        Learn the per-gene factor ``r_g`` (else ``r_g = 1``).
    lambda_cells
        Weight of the labelled rows' type classification (:meth:`set_spots`).
    entropy
        Weight of the entropy of the attention within types (a maximum-entropy prior on
        the mixing, as entropic OT's): the fit spreads over cells that explain a spot alike.
    lr
        Adam learning rate.
    """

    def __init__(
        self,
        dims: dict[str, int],
        n_genes: int,
        n_types: int,
        *,
        n_latent: int = 32,
        n_hidden: int = 128,
        likelihood: str = "nb",
        platform_factor: bool = True,
        lambda_cells: float = 1.0,
        prior: bool = False,
        entropy: float = 0.0,
        lr: float = 1e-2,
    ) -> None:
        super().__init__(lr=lr)
        self.views = [v for v in VIEWS if v in dims]
        self.columns = [VIEWS.index(v) for v in self.views]
        self.encoders = nn.ModuleDict(
            {v: MLP(dims[v], (n_hidden,), n_latent, norm="layer") for v in self.views}
        )
        self.fusion = GatedAttentionFusion(n_latent)
        self.query = nn.Linear(n_latent, n_latent)
        self.key = nn.Linear(n_latent, n_latent)
        self.type_head = nn.Linear(n_latent, n_types)
        self.log_r = nn.Parameter(torch.zeros(n_genes), requires_grad=bool(platform_factor))
        self.log_theta = nn.Parameter(torch.full((n_genes,), math.log(10.0)))
        self.log_beta = nn.Parameter(torch.tensor(math.log(10.0)), requires_grad=bool(prior))
        self.likelihood = likelihood
        self.lambda_cells = float(lambda_cells)
        self.prior = bool(prior)
        self.entropy = float(entropy)
        self.n_latent, self.n_types = int(n_latent), int(n_types)
        self.n_spots = self.n_cells_labelled = 0
        self.log_target: torch.Tensor | None = None

    # ------------------------------------------------------------------ data
    def set_reference(
        self, panel: np.ndarray, profiles: np.ndarray, codes: np.ndarray, axes: np.ndarray
    ) -> None:
        """The reference cells and the principal ``axes`` of the similarity prior (kept as
        plain tensors: data, not weights)."""
        self.axes = torch.as_tensor(axes, dtype=torch.float32)
        self.ref_unit = F.normalize(torch.as_tensor(panel @ axes, dtype=torch.float32), dim=1)
        self.ref_panel = torch.as_tensor(panel, dtype=torch.float32)
        self.ref_profiles = torch.as_tensor(profiles, dtype=torch.float32)
        self.ref_codes = torch.as_tensor(codes, dtype=torch.long)

    def set_spots(
        self,
        inputs: dict[str, np.ndarray],
        mask: np.ndarray,
        counts: np.ndarray,
        cand: np.ndarray,
        *,
        labelled: bool,
        held_out: np.ndarray | None = None,
        pseudo: dict[str, np.ndarray] | None = None,
        target: np.ndarray | None = None,
    ) -> None:
        """The training spots; ``labelled``: labelled rows join the batches after the spots
        (their type classification): the reference cells, or the ``pseudo`` spots pooled
        from them (:func:`.reference.pseudo_spots`: ``counts``, ``fractions``, and the
        spots' panel statistics ``mean``, ``sd``; their panel is computed per batch through
        the learned platform factor, :meth:`labelled_panel`);
        ``held_out``: spots kept out of the training rows, whose likelihood is the validation
        loss (:meth:`validation_loss`); ``target``: ``(n_spots, k)`` reference weights of
        the entropy term (:meth:`within_entropy`)."""
        self.inputs = {v: torch.as_tensor(inputs[v], dtype=torch.float32) for v in self.views}
        self.mask = torch.as_tensor(mask[:, self.columns], dtype=torch.bool)
        self.counts = torch.as_tensor(counts, dtype=torch.float32)
        self.cand = torch.as_tensor(cand, dtype=torch.long)
        self.log_target = (
            None
            if target is None
            else torch.log(torch.as_tensor(target, dtype=torch.float32).clamp_min(1e-12))
        )
        held = np.zeros(counts.shape[0], dtype=bool)
        if held_out is not None:
            held[np.asarray(held_out, dtype=np.int64)] = True
        self.train_spots = torch.as_tensor(np.flatnonzero(~held), dtype=torch.long)
        self.val_spots = torch.as_tensor(np.flatnonzero(held), dtype=torch.long)
        self.n_spots = int(self.train_spots.numel())
        self.lab_counts = None
        if pseudo is None:  # the reference cells: their panel is ref_panel (no second copy)
            self.lab_targets = F.one_hot(self.ref_codes, self.n_types).float()
        else:
            t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in pseudo.items()}
            self.lab_counts, self.lab_targets = t["counts"], t["fractions"]
            self.lab_mean, self.lab_sd = t["mean"], t["sd"]
        self.n_cells_labelled = int(self.lab_targets.shape[0]) if labelled else 0

    def move_data(self, device: torch.device) -> None:
        names = ("axes", "ref_unit", "ref_panel", "ref_profiles", "ref_codes", "mask", "counts")
        labelled = ("lab_targets", "lab_counts", "lab_mean", "lab_sd")
        for name in (*names, "cand", "train_spots", "val_spots", "log_target", *labelled):
            if getattr(self, name, None) is not None:
                setattr(self, name, getattr(self, name).to(device))
        if hasattr(self, "inputs"):
            self.inputs = {v: x.to(device) for v, x in self.inputs.items()}

    # ------------------------------------------------------------------ pieces
    def encode_spots(
        self, inputs: dict[str, torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused queries ``(B, n_latent)`` and view weights ``(B, n_views used)``."""
        e = torch.stack([self.encoders[v](inputs[v]) for v in self.views], dim=1)
        return self.fusion(e, mask)

    def encode_cells(self, panel: torch.Tensor) -> torch.Tensor:
        """Latent of reference cells (their panel through the spots' panel encoder)."""
        return self.encoders["panel"](panel)

    def cell_logits(self, q: torch.Tensor, cand: torch.Tensor, panel: torch.Tensor) -> torch.Tensor:
        """Attention logits ``(B, k)`` of the queries over their candidate cells: the
        query-key products plus (``prior``) ``beta`` times the cosine similarity of the
        spot's ``panel`` and the cell's on the principal axes (learned ``beta``)."""
        uniq, inv = torch.unique(cand, return_inverse=True)
        keys = take_rows(self.key(self.encode_cells(self.ref_panel[uniq])), inv)  # (B, k, d)
        logits = (self.query(q).unsqueeze(1) * keys).sum(-1) / math.sqrt(self.n_latent)
        if self.prior:
            unit = F.normalize(panel @ self.axes, dim=1)
            sim = (unit.unsqueeze(1) * self.ref_unit[cand]).sum(-1)
            logits = logits + torch.exp(self.log_beta) * sim
        return logits

    def within(
        self, q: torch.Tensor, cand: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Within-type attention ``(B, k, T)`` over the candidates ``cand`` (0 outside a
        candidate's type; ``logits``: :meth:`cell_logits`) and whether each type has a
        candidate ``(B, T)``."""
        onehot = F.one_hot(self.ref_codes[cand], self.n_types).bool()  # (B, k, T)
        within = torch.softmax(logits.unsqueeze(-1).masked_fill(~onehot, -torch.inf), dim=1)
        return torch.nan_to_num(within, nan=0.0), onehot.any(dim=1)

    def within_entropy(
        self,
        q: torch.Tensor,
        cand: torch.Tensor,
        panel: torch.Tensor,
        pi: torch.Tensor,
        log_target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B,)`` entropy of the attention within each type, weighted by the (fixed) type
        weights ``pi``: the term of the maximum-entropy prior (option ``entropy``); with
        ``log_target`` ``(B, k)`` (log weights of a reference plan, option
        ``entropy_reference="transport"``) minus the relative entropy to that plan."""
        within, _ = self.within(q, cand, self.cell_logits(q, cand, panel))
        log_ref = torch.log(within.clamp_min(1e-12))
        if log_target is not None:
            log_ref = log_ref - log_target.unsqueeze(-1)
        h = -(within * log_ref).sum(1)  # (B, T)
        return (pi.detach() * h).sum(1)

    @staticmethod
    def mix(
        within: torch.Tensor, present: torch.Tensor, pi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention ``a`` ``(B, k)`` from type weights ``pi`` and the within-type attention,
        and the mass of types without a candidate ``(B, T)``."""
        return (within * pi.unsqueeze(1)).sum(-1), pi * (~present)

    def composition(
        self, q: torch.Tensor, cand: torch.Tensor, panel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention ``a`` ``(B, k)`` over the candidates ``cand``, type weights ``pi``
        ``(B, T)`` and the mass of types without a candidate ``(B, T)``."""
        within, present = self.within(q, cand, self.cell_logits(q, cand, panel))
        pi = torch.softmax(self.type_head(q), dim=-1)
        a, missing = self.mix(within, present, pi)
        return a, pi, missing

    def refine(
        self,
        q: torch.Tensor,
        cand: torch.Tensor,
        panel: torch.Tensor,
        x: torch.Tensor,
        steps: int,
        penalty: float,
        cells: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Semi-amortized attention: the encoder's type logits (and, with ``cells``, its
        within-type logits) plus per-spot offsets fitted to the spots' counts ``x`` for
        ``steps`` Adam steps (weights frozen; an L2 ``penalty`` keeps the offsets near the
        encoder's answer). Returns ``(a, pi)``."""
        q = q.detach()
        base = self.type_head(q)
        profiles = self.ref_profiles[cand]
        means = self.type_means()
        library = x.sum(1)
        delta = torch.zeros_like(base, requires_grad=True)
        shift = torch.zeros(cand.shape, dtype=q.dtype, requires_grad=cells)
        logits = self.cell_logits(q, cand, panel).detach()
        fixed = None if cells else self.within(q, cand, logits)
        optimizer = torch.optim.Adam([delta, shift] if cells else [delta], lr=0.1)
        with torch.enable_grad():
            for _ in range(int(steps)):
                optimizer.zero_grad()
                within, present = fixed if fixed else self.within(q, cand, logits + shift)
                a, missing = self.mix(within, present, torch.softmax(base + delta, dim=-1))
                mu = self._mean(a, missing, profiles, means, library)
                prior = (delta**2).sum() + (shift**2).sum()
                loss = -self.log_likelihood(x, mu).sum() + penalty * prior
                loss.backward()
                optimizer.step()
            within, present = self.within(q, cand, logits + shift.detach())
        pi = torch.softmax(base + delta.detach(), dim=-1)
        return self.mix(within, present, pi)[0], pi

    def expected(
        self, a: torch.Tensor, missing: torch.Tensor, cand: torch.Tensor, library: torch.Tensor
    ) -> torch.Tensor:
        """Expected counts ``(B, n_genes)`` of spots with ``library`` total counts."""
        return self._mean(a, missing, self.ref_profiles[cand], self.type_means(), library)

    def _mean(self, a, missing, profiles, means, library) -> torch.Tensor:
        y = torch.einsum("bk,bkg->bg", a, profiles)
        if bool(missing.any()):  # types without a candidate: their mean profile
            y = y + missing @ means
        rate = y * torch.exp(self.log_r)
        return library.unsqueeze(1) * rate / rate.sum(1, keepdim=True).clamp_min(1e-12)

    def type_means(self) -> torch.Tensor:
        """``(T, n_genes)`` mean shrunk profile of every type."""
        onehot = F.one_hot(self.ref_codes, self.n_types).to(self.ref_profiles.dtype)
        return (onehot.T @ self.ref_profiles) / onehot.sum(0).clamp_min(1.0).unsqueeze(1)

    def log_likelihood(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """Per-spot log-likelihood, averaged over the genes."""
        if self.likelihood == "poisson":
            value = poisson_log_prob(x, mu)
        elif self.likelihood == "gaussian":
            value = _gaussian_log_prob(x, mu, torch.exp(self.log_theta))
        else:
            value = nb_log_prob(x, mu, torch.exp(self.log_theta))
        return value.mean(dim=1)

    # ------------------------------------------------------------------ losses
    def loss(self, index: torch.Tensor) -> torch.Tensor:
        spots = self.train_spots[index[index < self.n_spots]]
        cells = index[index >= self.n_spots] - self.n_spots
        total = torch.zeros((), device=index.device)
        if spots.numel():
            total = total + self.spot_loss(spots, regularized=True)
        if cells.numel():
            logits = self.type_head(self.encode_cells(self.labelled_panel(cells)))
            ce = -(self.lab_targets[cells] * F.log_softmax(logits, dim=-1)).sum()
            total = total + self.lambda_cells * ce
        return total / index.numel()

    def labelled_panel(self, rows: torch.Tensor) -> torch.Tensor:
        """Panel inputs of the labelled ``rows``: the reference cells' own, or the pseudo-spots'
        counts seen through the platform factor (as the spots' panel: scaled to a mean of 1
        per gene, ``log1p``, z-scored with the spots' statistics)."""
        if self.lab_counts is None:
            return self.ref_panel[rows]
        x = self.lab_counts[rows] * torch.exp(self.log_r.detach())
        scaled = x * x.shape[1] / x.sum(1, keepdim=True).clamp_min(1e-12)
        sd = self.lab_sd
        z = (torch.log1p(scaled) - self.lab_mean) / torch.where(sd > 0, sd, torch.ones_like(sd))
        return torch.where(sd > 0, z, torch.zeros_like(z))

    def spot_loss(self, spots: torch.Tensor, *, regularized: bool = False) -> torch.Tensor:
        """Negative log-likelihood (summed) of the spots ``spots`` under their amortized
        composition; ``regularized`` (training) also rewards the attention's entropy within
        types by ``entropy`` (maximum-entropy mixing, as entropic OT's)."""
        q, _ = self.encode_spots({v: x[spots] for v, x in self.inputs.items()}, self.mask[spots])
        cand, x, panel = self.cand[spots], self.counts[spots], self.inputs["panel"][spots]
        a, pi, missing = self.composition(q, cand, panel)
        loss = -self.log_likelihood(x, self.expected(a, missing, cand, x.sum(1))).sum()
        if regularized and self.entropy:
            target = None if self.log_target is None else self.log_target[spots]
            loss = loss - self.entropy * self.within_entropy(q, cand, panel, pi, target).sum()
        return loss

    def validation_loss(self, index: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the held-out spots ``index`` (rows of
        ``val_spots``)."""
        return self.spot_loss(self.val_spots[index])

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer(
        self,
        inputs: dict[str, np.ndarray],
        mask: np.ndarray,
        cand: np.ndarray,
        counts: np.ndarray,
        *,
        refine_steps: int = 0,
        refine_penalty: float = 0.0,
        refine_cells: bool = False,
    ) -> dict[str, Any]:
        """Attention, type weights, latent and view weights of spots (numpy, in blocks);
        with ``refine_steps``, type weights refined per spot on ``counts``
        (:meth:`refine`)."""
        self.eval()
        out: dict[str, list] = {"a": [], "pi": [], "latent": [], "view_weights": []}
        n = cand.shape[0]
        for start in range(0, n, _BLOCK):
            sl = slice(start, min(start + _BLOCK, n))
            block = {v: torch.as_tensor(inputs[v][sl], dtype=torch.float32) for v in self.views}
            m = torch.as_tensor(mask[sl][:, self.columns], dtype=torch.bool)
            q, weights = self.encode_spots(block, m)
            c = torch.as_tensor(cand[sl], dtype=torch.long)
            if refine_steps:
                x = torch.as_tensor(counts[sl], dtype=torch.float32)
                a, pi = self.refine(
                    q, c, block["panel"], x, refine_steps, refine_penalty, refine_cells
                )
            else:
                a, pi, _ = self.composition(q, c, block["panel"])
            for key, value in (("a", a), ("pi", pi), ("latent", q), ("view_weights", weights)):
                out[key].append(value.cpu().numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    @torch.no_grad()
    def cell_latent(self) -> np.ndarray:
        """Latent of every reference cell."""
        self.eval()
        blocks = [
            self.encode_cells(self.ref_panel[i : i + _BLOCK]).cpu().numpy()
            for i in range(0, self.ref_panel.shape[0], _BLOCK)
        ]
        return np.concatenate(blocks)


def _gaussian_log_prob(x: torch.Tensor, mu: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Gaussian log-density of values that are not counts (intensities), compared on their
    spot-normalized scale: ``x`` and ``mu`` divided by the spot's total and times the number
    of genes (a mean of 1 per gene, as the panel view), with a per-gene ``precision``."""
    scale = x.shape[1] / x.sum(1, keepdim=True).clamp_min(1e-12)
    residual = (x - mu) * scale
    return 0.5 * (torch.log(precision) - precision * residual**2 - math.log(2 * math.pi))
