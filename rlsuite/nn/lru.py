"""The Linear Recurrent Unit (LRU) and the recurrent core block PPO runs it in (`agent.core = lru`).

Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu, De, "Resurrecting Recurrent Neural Networks for
Long Sequences", ICML 2023, arXiv 2303.06349; the block's justification: Orvieto, De, Gulcehre,
Pascanu, Smith, "Universality of Linear Recurrences Followed by Non-linear Projections", ICML 2024,
arXiv 2307.11888. Definitions checked against NicolasZucchet/minimal-LRU (MIT); written from the
equations, not copied.

Layer (input u_k in R^H, complex state x_k in C^N):

    x_k = lambda * x_{k-1} + gamma * (B u_k)        (elementwise over the N units)
    y_k = Re(C x_k) + D * u_k
    lambda = exp(-exp(nu_log) + i exp(theta_log)),   |lambda| = exp(-exp(nu_log)) in (0, 1)
    gamma = sqrt(1 - |lambda|^2), trained as log gamma

Ring init: |lambda| area-uniform on r_min <= r <= r_max, phase uniform in [0, max_phase];
Re B, Im B ~ N(0, 1/(2H)); Re C, Im C ~ N(0, 1/N); D ~ N(0, 1).

Episode resets: a flag `start_k` zeroes the carried state before step k, i.e. the recurrence uses
a_k = lambda * (1 - start_k). Three evaluations of a stretch, which agree (tests/test_lru.py):
`LRU.step` (one step, O(1): acting), `linear_loop` (sequential) and `linear_scan` (Hillis-Steele
log-depth doubling over the pairs (a_k, b_k) with (a_i, b_i) o (a_j, b_j) = (a_j a_i, a_j b_i + b_j):
the update's replay of whole sequences).

Numerics: the recurrence runs in complex64 with autocast off (as `rlsuite.run.speed.fp32_region`),
even under bf16 autocast. Outside the layer the state is a real tensor (2, B, N) = (Re x, Im x), so
it travels through PPO's state plumbing and checkpoints as the LSTM's (h, c) does.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def linear_loop(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """x_k = a_k x_{k-1} + b_k for k = 0..T-1 from x_{-1} = x0, one step at a time.

    a, b: (T, ...) complex; x0: broadcastable to b[0]. Returns every x_k, (T, ...)."""
    out, x = [], x0
    for k in range(b.shape[0]):
        x = a[k] * x + b[k]
        out.append(x)
    return torch.stack(out)


def linear_scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The same x_k as `linear_loop` by a parallel (Hillis-Steele) inclusive scan: ceil(log2 T)
    rounds, round d composing every element with the one 2^d before it, (a_i, b_i) o (a_j, b_j) =
    (a_j a_i, a_j b_i + b_j). Afterwards (A_k, B_k) maps x_{-1} to x_k: x_k = A_k x0 + B_k.

    a, b: (T, ...) complex; x0 broadcastable to b[0]. Returns (T, ...)."""
    steps, d = b.shape[0], 1
    while d < steps:
        # b uses the a of the previous round, so it is updated first.
        b = torch.cat([b[:d], a[d:] * b[:-d] + b[d:]])
        a = torch.cat([a[:d], a[d:] * a[:-d]])
        d *= 2
    return a * x0 + b


def to_complex(state: torch.Tensor) -> torch.Tensor:
    """(2, B, N) real [Re, Im] -> (B, N) complex64."""
    return torch.complex(state[0].float(), state[1].float())


def to_real(x: torch.Tensor) -> torch.Tensor:
    """(B, N) complex -> (2, B, N) real [Re, Im]."""
    return torch.stack([x.real, x.imag])


class LRU(nn.Module):
    """One LRU layer: H inputs, N complex state units, H outputs (see the module docstring).

    Args:
        input_dim: H.
        state_dim: N.
        r_min, r_max: the ring of |lambda| at init, 0 <= r_min < r_max <= 1.
        max_phase: the phases at init are uniform in [0, max_phase] (radians).
        generator: the random stream of the init; None: torch's default one (PPO seeds it with the
            run's `network` stream inside `torch.random.fork_rng`, as for every other layer).

    Raises:
        ValueError: r_min, r_max outside 0 <= r_min < r_max <= 1, or max_phase <= 0.
    """

    def __init__(self, input_dim: int, state_dim: int, r_min: float = 0.0, r_max: float = 1.0,
                 max_phase: float = 2 * math.pi, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= r_min < r_max <= 1.0 or max_phase <= 0:
            raise ValueError(f"LRU needs 0 <= r_min < r_max <= 1 and max_phase > 0, got r_min={r_min}, "
                             f"r_max={r_max}, max_phase={max_phase}")
        h, n = input_dim, state_dim
        u1, u2 = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
        # |lambda|^2 area-uniform on the ring; kept off 0 and 1, where log nu or log gamma are infinite.
        r2 = (u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2).clamp(1e-8, 1.0 - 1e-6)
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(r2)))
        self.theta_log = nn.Parameter(torch.log((max_phase * u2).clamp_min(1e-8)))
        self.gamma_log = nn.Parameter(0.5 * torch.log(1.0 - r2))  # log sqrt(1 - |lambda|^2)
        self.B_re = nn.Parameter(torch.randn(n, h, generator=generator) / math.sqrt(2 * h))
        self.B_im = nn.Parameter(torch.randn(n, h, generator=generator) / math.sqrt(2 * h))
        self.C_re = nn.Parameter(torch.randn(h, n, generator=generator) / math.sqrt(n))
        self.C_im = nn.Parameter(torch.randn(h, n, generator=generator) / math.sqrt(n))
        self.D = nn.Parameter(torch.randn(h, generator=generator))
        self.input_dim, self.state_dim = h, n

    RECURRENT = ("nu_log", "theta_log", "gamma_log", "B_re", "B_im")
    """The parameters the reference trains at half the learning rate and without weight decay."""

    def recurrent_parameters(self) -> list[nn.Parameter]:
        return [getattr(self, name) for name in self.RECURRENT]

    def lambdas(self) -> torch.Tensor:
        """(N,) complex64: exp(-exp(nu_log) + i exp(theta_log))."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def drive(self, u: torch.Tensor) -> torch.Tensor:
        """gamma * (B u): (..., H) real -> (..., N) complex64."""
        gamma = torch.exp(self.gamma_log)
        return torch.complex(u @ self.B_re.T, u @ self.B_im.T) * gamma

    def readout(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Re(C x) + D * u: x (..., N) complex, u (..., H) -> (..., H) real."""
        return x.real @ self.C_re.T - x.imag @ self.C_im.T + self.D * u

    def step(self, u: torch.Tensor, x: torch.Tensor, start: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step, O(1) in the sequence length. u: (B, H); x: (B, N) complex, the state before
        it; start: (B,) 1.0 where u starts an episode (the state is zeroed first). -> (y (B, H), x)."""
        with torch.autocast(u.device.type, enabled=False):
            u = u.float()
            a = self.lambdas() if start is None else self.lambdas() * (1.0 - start.float()).unsqueeze(-1)
            x = a * x + self.drive(u)
            return self.readout(x, u), x

    def forward(self, u: torch.Tensor, x0: torch.Tensor, starts: torch.Tensor | None = None,
                parallel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """A stretch of T steps. u: (T, B, H); x0: (B, N) complex, the state before step 0;
        starts: (T, B) episode-start flags or None. `parallel`: the associative scan (else the
        sequential loop). -> (y (T, B, H) real, every state (T, B, N) complex)."""
        with torch.autocast(u.device.type, enabled=False):
            u = u.float()
            lam = self.lambdas()
            a = lam.expand(*u.shape[:-1], self.state_dim)
            if starts is not None:
                a = a * (1.0 - starts.float()).unsqueeze(-1)
            xs = (linear_scan if parallel else linear_loop)(a, self.drive(u), x0)
            return self.readout(xs, u), xs


class LRUBlock(nn.Module):
    """PPO's LRU core: out = u + GLU(GELU(LRU(LayerNorm(u)))), GLU(z) = (W1 z + b1) * sigmoid(W2 z + b2).

    The spec's block (pre-norm, LRU, GELU, GLU, residual; minimal-LRU's `SequenceLayer`) without its
    dropout (PPO's update must replay exactly what acting computed). The position-wise GLU after the
    linear recurrence is the nonlinear readout the universality result asks for; widths match, so the
    residual keeps the current features one linear path away from the heads.

    Args: width H (the encoder's features), state N, the ring init and the LRU's `generator` (see
    `LRU`; the GLU's Linear draws from torch's default stream, seeded by the agent).
    State: (2, B, N) real [Re x, Im x]. Input/output: (T, B, H).
    """

    def __init__(self, width: int, state_dim: int, r_min: float = 0.0, r_max: float = 1.0,
                 max_phase: float = 2 * math.pi, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.lru = LRU(width, state_dim, r_min, r_max, max_phase, generator)
        self.glu = nn.Linear(width, 2 * width)  # value and gate halves in one matmul

    def forward(self, u: torch.Tensor, state: torch.Tensor, starts: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """u: (T, B, H); state: (2, B, N); starts: (T, B). One step (T = 1, acting) takes the O(1)
        `LRU.step`; a stretch (the update's replay) the parallel scan. -> (out (T, B, H), state after)."""
        x0 = to_complex(state)
        z = self.norm(u)
        if u.shape[0] == 1:
            y, last = self.lru.step(z[0], x0, starts[0])
            y = y.unsqueeze(0)
        else:
            y, xs = self.lru(z, x0, starts)
            last = xs[-1]
        return u + F.glu(self.glu(F.gelu(y)), dim=-1), to_real(last)
