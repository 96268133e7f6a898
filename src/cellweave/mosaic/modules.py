"""Torch building blocks of the mosaic model: fusion, mixture prior, decoders.

* :class:`GatedAttentionFusion` - per-cell weights over the modalities it measured (a softmax
  with absent modalities masked out; gated attention of Ilse et al. 2018; defined in
  :mod:`cellweave.nn`, re-exported here).
* :class:`MixturePrior` - ``p(z | c, u) = N(m_c + W_c u, diag(exp(s_c)))`` with a discrete
  cluster ``c ~ Cat(pi)`` and a continuous ``u ~ N(0, I)`` (a mixture of factor analysers),
  variational ``q(c | z)`` and ``q(u | c, z)``; the KL term either sums over every cluster
  exactly (``"exact"``), samples ``c`` with the straight-through Gumbel-softmax
  (``"gumbel"``), or uses the closed-form marginal ``p(z) = sum_c pi_c N(z | m_c, W_c W_c^T +
  diag(exp(s_c)))`` with ``q(c | z) = p(c | z)`` (``"marginal"``, VaDE-style: no separate
  classifier, the responsibilities of the mixture are the cluster probabilities).
* :class:`HybridDecoder` - feature logits ``softplus(a_bf) * z.V_f + MLP(z)_f + b_bf`` (batch
  ``b``) and the head of its likelihood (:mod:`.kinds`): NB / ZINB (mean ``library *
  softmax``), Bernoulli (``sigmoid(logit + log depth / mean depth)``), binomial /
  beta-binomial (methylation rate ``sigmoid(logit)`` of the covered reads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import MLP, GatedAttentionFusion
from .kinds import get_head

__all__ = ["GatedAttentionFusion", "HybridDecoder", "MixturePrior", "normal_log_prob"]

_LOG_2PI = math.log(2 * math.pi)
_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``log N(x | mean, exp(log_var))`` summed over the last axis."""
    return -0.5 * (_LOG_2PI + log_var + (x - mean) ** 2 * torch.exp(-log_var)).sum(-1)


class MixturePrior(nn.Module):
    """Mixture prior ``p(z | c, u)`` with ``q(c | z)`` and ``q(u | c, z)`` (see the module
    docstring).

    Parameters
    ----------
    n_latent, n_clusters, n_continuous
        Dimensions of ``z``, number of clusters, dimension of ``u``.
    hidden
        Width of the hidden layer of ``q(c | z)`` and ``q(u | c, z)``.
    mode
        ``"exact"`` (sum over clusters), ``"gumbel"`` (one relaxed sample) or ``"marginal"``
        (closed-form marginal over ``c`` and ``u``; ``q(c | z)`` the mixture's
        responsibilities).
    temperature
        Gumbel-softmax temperature.
    """

    def __init__(
        self,
        n_latent: int,
        n_clusters: int,
        n_continuous: int = 2,
        *,
        hidden: int = 128,
        mode: str = "exact",
        temperature: float = 0.5,
    ) -> None:
        super().__init__()
        if mode not in ("exact", "gumbel", "marginal"):
            raise ValueError(f"mode={mode!r}; choose 'exact', 'gumbel' or 'marginal'")
        self.k, self.d, self.du = int(n_clusters), int(n_latent), int(n_continuous)
        self.mode, self.temperature = mode, float(temperature)
        if mode != "marginal":  # the marginal needs neither (closed form)
            self.classifier = MLP(self.d, (hidden,), self.k, norm="layer")
            self.u_encoder = MLP(self.d + self.k, (hidden,), 2 * self.du, norm="layer")
        self.means = nn.Parameter(torch.randn(self.k, self.d) * 0.5)
        self.loadings = nn.Parameter(torch.randn(self.k, self.d, self.du) * 0.1)
        self.log_var = nn.Parameter(torch.full((self.k, self.d), -1.0))
        self.log_pi = nn.Parameter(torch.zeros(self.k))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of ``q(c | z)``, ``(B, K)`` (``"marginal"``: ``log pi_c + log p(z | c)``)."""
        if self.mode == "marginal":
            return self.log_joint(z)
        return self.classifier(z)

    def active(self) -> torch.Tensor:
        """Which components are in use (prior weight above 1e-9; pruned ones are not)."""
        return torch.softmax(self.log_pi.detach(), -1) > 1e-9

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """``log pi_c + log p(z | c)`` with ``u`` integrated out, ``(B, K)``."""
        log_pc = torch.log_softmax(self.log_pi, -1)
        var = torch.exp(self.log_var)
        if self.du == 0:
            diff = z.unsqueeze(1) - self.means  # (B, K, d)
            log_pz = -0.5 * (_LOG_2PI + self.log_var + diff**2 / var).sum(-1)
            return log_pz + log_pc
        dist = torch.distributions.LowRankMultivariateNormal(
            self.means, self.loadings, var, validate_args=False
        )
        return dist.log_prob(z.unsqueeze(1)) + log_pc

    @torch.no_grad()
    def set_mixture(self, means, variances, weights) -> None:
        """Set the components (``(K, d)`` means and variances, ``(K,)`` weights; e.g. a
        Gaussian mixture fitted on the latent, VaDE's initialization); the loadings restart
        small."""
        self.means.copy_(torch.as_tensor(means, dtype=self.means.dtype))
        self.log_var.copy_(torch.log(torch.as_tensor(variances, dtype=self.log_var.dtype)))
        w = torch.as_tensor(weights, dtype=self.log_pi.dtype).clamp_min(1e-12)
        self.log_pi.copy_(torch.log(w / w.sum()))
        scale = float(torch.as_tensor(variances).mean().sqrt()) * 0.1
        self.loadings.normal_(0.0, scale)

    def _u(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``u ~ q(u | c, z)`` and return it with ``log q(u) - log p(u)``."""
        mean, log_var = self.u_encoder(torch.cat([z, c], -1)).chunk(2, -1)
        log_var = log_var.clamp(-8.0, 8.0)
        u = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        zeros = torch.zeros_like(u)
        return u, normal_log_prob(u, mean, log_var) - normal_log_prob(u, zeros, zeros)

    def kl(
        self, z: torch.Tensor, log_qz: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell ``log q(z|x) - E_q[log p(z, c, u) - log q(c, u | z)]`` at the sample ``z``.

        ``labels``: ``(B,)`` cluster of labelled cells, ``-1`` elsewhere; a labelled cell's
        ``q(c | z)`` is replaced by its label. Returns ``(kl (B,), logits (B, K))``.
        """
        logits = self.logits(z)
        known = None
        if labels is not None and bool((labels >= 0).any()):
            known = labels >= 0
            onehot = F.one_hot(labels.clamp_min(0), self.k).to(z.dtype)
        if self.mode == "marginal":  # log q(z|x) - log p(z) (labelled: - log p(z, c))
            log_pz = torch.logsumexp(logits, -1)
            if known is not None:
                log_pz = torch.where(known, (onehot * logits).sum(-1), log_pz)
            return log_qz - log_pz, logits
        log_qc = torch.log_softmax(logits, -1)
        log_pc = torch.log_softmax(self.log_pi, -1)
        if self.mode == "exact":
            b = z.shape[0]
            eye = torch.eye(self.k, device=z.device, dtype=z.dtype)
            zk = z.unsqueeze(0).expand(self.k, b, self.d)
            ck = eye.unsqueeze(1).expand(self.k, b, self.k)
            u, u_term = self._u(zk.reshape(-1, self.d), ck.reshape(-1, self.k))
            u = u.view(self.k, b, self.du)
            mean = self.means.unsqueeze(1) + torch.einsum("kdu,kbu->kbd", self.loadings, u)
            log_pz = normal_log_prob(zk, mean, self.log_var.unsqueeze(1).expand(-1, b, -1))
            term = log_pz - u_term.view(self.k, b) + log_pc.unsqueeze(1)  # (K, B)
            qc = torch.exp(log_qc)
            if known is not None:
                qc = torch.where(known.unsqueeze(1), onehot, qc)
                log_qc = torch.where(known.unsqueeze(1), torch.zeros_like(log_qc), log_qc)
            elbo = (qc * (term.T - log_qc)).sum(-1)
            return log_qz - elbo, logits
        # Gumbel-softmax: one straight-through sample of c
        c = F.gumbel_softmax(logits, tau=self.temperature, hard=True)
        kl_c = (torch.exp(log_qc) * (log_qc - log_pc)).sum(-1)
        if known is not None:
            c = torch.where(known.unsqueeze(1), onehot, c)
            kl_c = torch.where(known, -(onehot * log_pc).sum(-1), kl_c)
        u, u_term = self._u(z, c)
        mean = c @ self.means + torch.einsum("bk,kdu,bu->bd", c, self.loadings, u)
        log_pz = normal_log_prob(z, mean, c @ self.log_var)
        return log_qz - log_pz + u_term + kl_c, logits


class HybridDecoder(nn.Module):
    """Decoder of one modality (see the module docstring).

    Parameters
    ----------
    n_latent, n_features, n_batches
        Latent width, features of the modality, batches.
    likelihood
        A likelihood of a registered modality kind (``"nb"``, ``"zinb"``, ``"bernoulli"``,
        ``"binomial"``, ``"betabinomial"``); its head adds its parameters.
    hidden
        Hidden widths of the MLP part (empty: no MLP, a GLUE-style linear decoder).
    bias
        ``(n_features,)`` initial logits (e.g. the log mean profile).
    mean_library
        Mean library size of the modality (the Bernoulli depth offset is ``log(library /
        mean_library)``).
    absolute
        NB / ZINB only: the mean is ``exp(logits)`` itself rather than ``library *
        softmax(logits)``, so the decoder predicts each cell's total as well as its
        composition (totalVI's protein model; ``bias`` should then be the log mean count).
        Used for protein, whose per-cell total is mostly biological: a composition times a
        constant library cannot follow it (on REAP-seq even the true composition times the
        median library scores a per-protein Pearson of only 0.78).
    """

    def __init__(
        self,
        n_latent: int,
        n_features: int,
        n_batches: int,
        *,
        likelihood: str,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        bias: torch.Tensor | None = None,
        mean_library: float = 1.0,
        absolute: bool = False,
    ) -> None:
        super().__init__()
        self.likelihood = likelihood
        self.head = get_head(likelihood)
        self.absolute = bool(absolute) and self.head.can_be_absolute
        self.mlp = MLP(n_latent, hidden, n_features, dropout=dropout) if hidden else None
        if self.mlp is not None:
            with torch.no_grad():  # start close to the inner-product decoder
                last = self.mlp.net[-1]
                last.weight.mul_(0.1)
                last.bias.zero_()
        self.scale = nn.Parameter(torch.full((n_batches, n_features), _SOFTPLUS_ONE))
        start = torch.zeros(n_features) if bias is None else torch.as_tensor(bias).float()
        self.bias = nn.Parameter(start.unsqueeze(0).repeat(n_batches, 1))
        self.head.init(self, n_batches, n_features)
        self.register_buffer("log_mean_library", torch.tensor(math.log(max(mean_library, 1e-8))))

    def logits(
        self, z: torch.Tensor, v: torch.Tensor, batch: int, cols: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``(B, F)`` of latents ``z`` of cells of one batch ``batch`` (features
        ``cols`` only when given; ``v`` holds every feature's embedding)."""
        scale, bias = self.scale[batch], self.bias[batch]
        if cols is not None:
            v, scale, bias = v[cols], scale[cols], bias[cols]
        out = torch.addcmul(bias, z @ v.T, F.softplus(scale))
        if self.mlp is not None:
            if cols is None:
                out = out + self.mlp(z)
            else:  # the last layer on the selected features only
                hidden = self.mlp.net[:-1](z)
                last = self.mlp.net[-1]
                out = out + torch.addmm(last.bias[cols], hidden, last.weight[cols].T)
        return out

    def log_prob(
        self,
        x: torch.Tensor,
        logits: torch.Tensor,
        library: torch.Tensor,
        batch: int,
        cols: torch.Tensor | None = None,
        layers: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``log p(x | z)`` per cell (summed over the features; ``cols``: a subset of features
        (heads that allow it), scaled up to all of them; ``layers``: the kind's extra
        matrices at the same entries, e.g. methylation's coverage)."""
        value = self.head.log_prob(self, x, logits, library, batch, layers or {})
        if cols is not None:
            value = value * (self.scale.shape[1] / cols.numel())
        return value

    def mean(self, logits: torch.Tensor, library: torch.Tensor | None) -> torch.Tensor:
        """NB mean: ``library * softmax(logits)``, or ``exp(logits)`` when ``library`` is
        ``None`` (an ``absolute`` decoder's own prediction of the total)."""
        if library is None:
            return torch.exp(logits.clamp(max=30.0))
        return library.unsqueeze(1) * torch.softmax(logits, -1)

    def expected(
        self, logits: torch.Tensor, library: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        """Expected value per entry: ``library * softmax`` (NB; times ``1 - dropout`` for
        ZINB; ``library=None`` with an ``absolute`` decoder: ``exp(logits)``), the open
        probability (Bernoulli) or the methylation rate (binomial / beta-binomial)."""
        return self.head.expected(self, logits, library, batch)
