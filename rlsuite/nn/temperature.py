"""Adaptive temperature for softmax: an inverse temperature chosen per row from the row's entropy.

Veličković, Perivolaropoulos, Barbero, Pascanu, "softmax is not enough (for sharp
out-of-distribution)", arXiv 2410.01104 (ICML 2025 version: "Softmax is not Enough (for Sharp Size
Generalisation)"). The paper releases no code repository; its JAX listing ("Figure 4", a drop-in
for `jax.nn.softmax`) is the reference, re-derived here from the rule it states:

    p    = softmax(z)
    H    = -sum_i p_i log(p_i + 1e-9)                                   (nats)
    poly = -0.037 H^4 + 0.481 H^3 - 2.3 H^2 + 4.917 H - 1.791
    beta = max(poly, 1)  if H > 0.5   ("never increase the entropy")
           1             otherwise    ("do not over-correct heads that are already sharp")
    out  = softmax(beta z)

Why: with bounded inputs the logits' spread is bounded whatever the number of items n, so every
softmax weight is at most about e^spread / n and attention disperses as n grows past the training
sizes. Lowering the temperature lowers the entropy, so the paper fits the inverse temperature
that restores sharpness as a polynomial of the entropy (degree 4, fitted on its max-retrieval model).
beta > 1 only for H in (0.849, 5.945) nats, peaking at about 2.42 near H = 4.41: rows of fewer than
about 3 effective items (e.g. a 2-action policy, H <= ln 2) or more than about 380 are left as they are.
The paper applies it at inference time only; there is no learned parameter and no stop-gradient.

All arithmetic is in fp32 whatever the input dtype (bf16 logits would round the entropy and the
polynomial), and every function returns fp32.
"""
from __future__ import annotations

import torch

ENTROPY_EPS = 1e-9
"""Added inside the log of the entropy (the paper's 1e-9), so zero probabilities contribute 0."""
ENTROPY_THRESHOLD = 0.5
"""Rows with entropy at or below this (nats) keep beta = 1."""
POLY = (-0.037, 0.481, -2.3, 4.917, -1.791)
"""The polynomial's coefficients, highest degree first (H^4 ... H^0)."""


def entropy(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """H = -sum p log(p + 1e-9) of p = softmax(logits) along `dim`, in nats, fp32.

    logits: (..., n, ...) any float dtype; returns the same shape with `dim` kept as size 1."""
    p = torch.softmax(logits.float(), dim=dim)
    return -(p * torch.log(p + ENTROPY_EPS)).sum(dim=dim, keepdim=True)


def adaptive_inverse_temperature(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The paper's inverse temperature beta >= 1 of each row of `logits` (rows along `dim`).

    logits: (..., n, ...) any float dtype (-inf entries, e.g. masked attention, are allowed in a row
    that has a finite entry). Returns fp32 beta of the same shape with `dim` kept as size 1, so
    `beta * logits` broadcasts: beta = max(poly(H), 1) where H > 0.5 nats, else 1 (module docstring).
    Invariant to adding a constant to a row (softmax is)."""
    h = entropy(logits, dim)
    poly = torch.zeros_like(h)
    for coef in POLY:  # Horner: (((c4 H + c3) H + c2) H + c1) H + c0
        poly = poly * h + coef
    return torch.where(h > ENTROPY_THRESHOLD, poly.clamp_min(1.0), torch.ones_like(h))


def adaptive_logits(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """beta * logits in fp32 (same shape as `logits`): for samplers and losses that take logits.
    softmax of the result along `dim` is `adaptive_softmax(logits, dim)`."""
    z = logits.float()
    return adaptive_inverse_temperature(z, dim) * z


def adaptive_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """softmax(beta * logits) along `dim`, fp32, same shape as `logits`: the paper's drop-in for
    softmax. Equal to plain softmax where beta = 1 (H <= 0.5 nats, or poly(H) <= 1)."""
    return torch.softmax(adaptive_logits(logits, dim), dim=dim)
