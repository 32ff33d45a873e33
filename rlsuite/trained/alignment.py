"""The matching maths of `rlsuite merge`: activation covariances, CCA alignment, permutation alignment.

Everything here works on one *merge point* (the output of one hidden activation) of two networks, A
(the reference) and B, fed the same inputs: activations X_A, X_B of shape (n, d) (conv maps pooled
over batch and space, so n = batch x H x W and d = channels). Both alignments return a square
matrix T (d, d) that maps B's units into A's basis, x_hat_A = T^T x_B, together with (T^T)^{-1},
which the next layer's input side needs.

CCA (Horoi, Orozco Camacho, Belilovsky, Wolf, "Harmony in Diversity: Merging Neural Networks with
Canonical Correlation Analysis", ICML 2024, arXiv 2407.05385; official code shoroi/align-n-merge,
read for reference only):

    S_AA = Cov(X_A) + gamma I,  S_BB = Cov(X_B) + gamma I,  S_AB = Cov(X_A, X_B)
    S_AA^{-1/2} S_AB S_BB^{-1/2} = U Sigma V^T                (Sigma: the canonical correlations)
    T = S_BB^{-1/2} V U^T S_AA^{1/2},   (T^T)^{-1} = S_BB^{1/2} V U^T S_AA^{-1/2}

so B's canonical variables V^T S_BB^{-1/2} x_B become A's, U^T S_AA^{-1/2} x_A. gamma regularises the
covariances; it is needed whenever the activations are rank-deficient (dead ReLUs, more units than
distinct inputs). The official function's default is 0.1, and the paper tunes gamma per setting over
a log grid (1e-6 ... 1e7).

Permutation (the one-to-one matching of Git Re-Basin / ZipIt!-style activation matching): T is the
permutation matrix that pairs each unit of A with one unit of B so that the sum of the pairs'
Pearson correlations is largest (the Hungarian algorithm, scipy.optimize.linear_sum_assignment).
A permutation commutes exactly with elementwise activations and with LayerNorm/RMSNorm (their gains
permuted alike); a general T does not, which is why CCA merging is an approximation that is exact
for linear layers and improves as the canonical correlations approach 1.
"""
from __future__ import annotations

import torch

from rlsuite.errors import UserError


class JointMoments:
    """Running first and second moments of [X_A, X_B], in float64, for the joint covariance.

    `add` takes batches (n, d_a) and (n, d_b) of the same n inputs. The sums are taken around a
    shift (the first batch's mean) so that the covariance does not lose its digits to a large mean.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None
        self.d_a = 0

    def add(self, xa: torch.Tensor, xb: torch.Tensor) -> None:
        if xa.shape[0] != xb.shape[0]:
            raise ValueError(f"activation batches of different sizes: {xa.shape[0]} and {xb.shape[0]}")
        x = torch.cat([xa.detach().double().cpu(), xb.detach().double().cpu()], dim=1)
        if self.shift is None:
            self.d_a = xa.shape[1]
            self.shift = x.mean(dim=0)
            self.total = torch.zeros_like(self.shift)
            self.outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        x = x - self.shift
        self.n += x.shape[0]
        self.total += x.sum(dim=0)
        self.outer += x.T @ x

    def covariance(self) -> torch.Tensor:
        """The (d_a + d_b, d_a + d_b) sample covariance (denominator n - 1)."""
        if self.n < 2:
            raise UserError("merge needs at least two activation samples per merge point")
        mean = self.total / self.n
        return (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)


def blocks(cov: torch.Tensor, d_a: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S_AA, S_BB, S_AB) of a joint covariance whose first d_a rows are A's."""
    return cov[:d_a, :d_a], cov[d_a:, d_a:], cov[:d_a, d_a:]


def symmetric_powers(s: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(S^{1/2}, S^{-1/2}) of a symmetric positive-definite matrix, by its eigendecomposition.

    Raises UserError when S is singular (an eigenvalue <= 1e-12 of the largest): the activations
    are rank-deficient and gamma must be positive.
    """
    s = (s + s.T) / 2
    values, vectors = torch.linalg.eigh(s)
    top = float(values.max()) if values.numel() else 0.0
    if top <= 0 or float(values.min()) <= 1e-12 * top:
        raise UserError(f"the activation covariance of {what} is singular (rank-deficient activations: dead or "
                        "constant units); use --gamma > 0 (the default 0.1 regularises it)")
    root = values.sqrt()
    return (vectors * root) @ vectors.T, (vectors / root) @ vectors.T


def cca_transform(cov: torch.Tensor, d_a: int, gamma: float, what: str = "a merge point"
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CCA alignment of B to A from their joint covariance `cov` (float64).

    Returns (T, (T^T)^{-1}, canonical correlations), T of shape (d_b, d_a) with x_hat_A = T^T x_B
    (d_a == d_b here: same architecture). Equations in the module docstring.
    """
    if gamma < 0:
        raise UserError(f"gamma must be >= 0, got {gamma}")
    s_aa, s_bb, s_ab = blocks(cov, d_a)
    eye_a = torch.eye(s_aa.shape[0], dtype=cov.dtype)
    eye_b = torch.eye(s_bb.shape[0], dtype=cov.dtype)
    aa_half, aa_inv_half = symmetric_powers(s_aa + gamma * eye_a, f"{what} (reference)")
    bb_half, bb_inv_half = symmetric_powers(s_bb + gamma * eye_b, what)
    u, sigma, vh = torch.linalg.svd(aa_inv_half @ s_ab @ bb_inv_half)
    v_ut = vh.T @ u.T
    t = bb_inv_half @ v_ut @ aa_half
    t_inv_t = bb_half @ v_ut @ aa_inv_half
    return t, t_inv_t, sigma


def correlations(cov: torch.Tensor, d_a: int) -> torch.Tensor:
    """(d_a, d_b) Pearson correlations between A's and B's units; 0 where a unit is constant."""
    s_aa, s_bb, s_ab = blocks(cov, d_a)
    sd_a, sd_b = s_aa.diagonal().clamp_min(0).sqrt(), s_bb.diagonal().clamp_min(0).sqrt()
    denom = torch.outer(sd_a, sd_b)
    return torch.where(denom > 1e-12, s_ab / denom.clamp_min(1e-300), torch.zeros_like(s_ab))


def permutation_transform(cov: torch.Tensor, d_a: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-to-one matching of B's units to A's maximising the summed correlation (Hungarian algorithm).

    Returns (P, (P^T)^{-1} = P, the matched pairs' correlations (d_a,)), P the (d_b, d_a)
    permutation matrix with P[j, i] = 1 when B's unit j is matched to A's unit i (x_hat_A = P^T x_B).
    """
    from scipy.optimize import linear_sum_assignment

    corr = correlations(cov, d_a)
    rows, cols = linear_sum_assignment(corr.numpy(), maximize=True)
    p = torch.zeros(corr.shape[1], corr.shape[0], dtype=cov.dtype)
    p[torch.as_tensor(cols), torch.as_tensor(rows)] = 1.0
    return p, p, corr[torch.as_tensor(rows), torch.as_tensor(cols)]
