"""Count log-likelihoods, element-wise (summed over genes for the multinomial).

Parametrised as in scvi-tools: negative binomial with mean ``mu`` and inverse dispersion
``theta`` (variance ``mu + mu**2 / theta``); zero inflation through the *logits* ``pi`` of the
dropout probability. All functions return log-probabilities (higher is better); take the
negative sum as a loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "LIKELIHOODS",
    "multinomial_log_prob",
    "nb_log_prob",
    "poisson_log_prob",
    "zinb_log_prob",
]

LIKELIHOODS = ("poisson", "multinomial", "nb", "zinb")


def poisson_log_prob(x: torch.Tensor, mu: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """``log Poisson(x | mu)`` per entry (``0 log 0 = 0``)."""
    return torch.xlogy(x, mu + eps) - mu - torch.lgamma(x + 1)


def multinomial_log_prob(
    x: torch.Tensor, logits: torch.Tensor, *, include_constant: bool = True
) -> torch.Tensor:
    """``log Multinomial(x | n = x.sum(-1), p = softmax(logits))`` per row.

    With ``include_constant=False`` the ``log n! - sum log x!`` term (free of parameters) is
    left out, which is all a loss needs.
    """
    value = (x * torch.log_softmax(logits, dim=-1)).sum(-1)
    if include_constant:
        value = value + torch.lgamma(x.sum(-1) + 1) - torch.lgamma(x + 1).sum(-1)
    return value


def nb_log_prob(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, *, eps: float = 1e-8
) -> torch.Tensor:
    """``log NB(x | mean mu, inverse dispersion theta)`` per entry (scvi-tools'
    ``log_nb_positive``)."""
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def zinb_log_prob(
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor,
    pi_logits: torch.Tensor,
    *,
    eps: float = 1e-8,
) -> torch.Tensor:
    """``log ZINB(x | mu, theta, dropout logits pi)`` per entry (scvi-tools'
    ``log_zinb_positive``): a zero with probability ``sigmoid(pi)``, else NB(mu, theta)."""
    softplus_neg_pi = F.softplus(-pi_logits)  # -log(1 - sigmoid(pi))
    log_theta_mu = torch.log(theta + mu + eps)
    pi_theta_log = -pi_logits + theta * (torch.log(theta + eps) - log_theta_mu)
    case_zero = F.softplus(pi_theta_log) - softplus_neg_pi
    case_nonzero = (
        -softplus_neg_pi
        + pi_theta_log
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    return torch.where(x > 0, case_nonzero, case_zero)
