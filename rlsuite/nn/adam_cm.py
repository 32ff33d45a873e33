"""Adam with critical momenta (Adam+CM): AdamW plus a small priority buffer of past momenta.

Paper: Malviya et al., "Promoting Exploration in Memory-Augmented Adam using Critical Momenta",
arXiv 2307.09638 (TMLR 2024), with the update as the official `Adam_CM` (chandar-lab/CMOptimizer) runs it.

The optimizer keeps, per parameter group, a buffer B of at most C past momenta, each with a priority key
(the gradient norm at the time it was stored, decayed every step). The buffer mean is added to the
current momentum, so large "critical" momenta from the past push the iterate out of sharp basins.
Per group and step t, with g the gradient of each tensor:

    s_t   = sum_p ||g_p||_2                 (synced=True; per tensor ||g_p||_2 when synced=False)
    theta <- theta * (1 - lr * weight_decay)                       (decoupled, AdamW style)
    m_t   = b1 * m_{t-1} + (1 - b1) * g
    m~_t  = m_t + mean_{c in B} m_c         (B before insertion; m~_t = m_t while B is empty)
    insert (s_t, m_t) into B: if |B| < C append; elif s_t > min_c k_c overwrite the argmin entry;
          else reject. With probability critical_test a full buffer's argmin entry is overwritten
          unconditionally (a FIFO-like refresh).
    v_t   = b2 * v_{t-1} + (1 - b2) * m~_t^2                       (from the aggregate, not g^2)
    theta <- theta - lr / (1 - b1^t) * m~_t / (sqrt(v_t / (1 - b2^t)) + eps)
    k_c   <- decay * k_c for every key                              (after the update)

Defaults (those of the official code): lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0,
top_c C = 5, decay 0.7, synced True, critical_test 0, buffer_dtype None (buffer in the parameter dtype).
top_c = 0 disables the buffer; the optimizer is then AdamW step for step (m~ = m and v from g^2, as the
spec's equivalence test asks; with a buffer, v comes from m~ even while the buffer is empty).

Departures from the official `Adam_CM`:
- Step 1: the official code puts the raw g_1 into the buffer and leaves m = 0, so its first step moves
  nothing. Here step 1 is an ordinary step: m_1 = (1 - b1) g_1 is aggregated with the (empty) buffer,
  applied, and then inserted.
- top_c = 0 works (the official class crashes when the buffer is off); amsgrad is not offered.
- The critical_test draw comes from a caller-owned `torch.Generator` (never the global RNG); its state
  travels in `state_dict()` (key `cm_generator`), so a checkpointed run resumes the same draws.
- Synced mode with a tensor that has no gradient at some step: that tensor's buffer slot keeps its old
  content (it has no new momentum); each tensor averages only the slots it has filled.

State (plain tensors and ints, so `state_dict()` round-trips bitwise): every tensor with a gradient has
`step`, `exp_avg`, `exp_avg_sq`, `cm_buffer` (C, *shape) and `cm_filled` (C,) bool. The buffer keys
`cm_keys` (C,) float64, `cm_size`, `cm_accepted` and `cm_rejected` live with the decision owner: the
group's first parameter when synced, else each tensor itself.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


def _check(name: str, ok: bool, value: Any, rule: str) -> None:
    if not ok:
        raise ValueError(f"AdamCM: {name} must be {rule}, got {value!r}")


class AdamCM(torch.optim.Optimizer):
    """AdamW whose momentum is augmented with the mean of a priority buffer of past momenta.

    Args:
        params: tensors or parameter-group dicts, as for any torch optimizer.
        lr: step size (> 0).
        betas: (b1, b2), each in [0, 1).
        eps: added to the denominator (>= 0).
        weight_decay: decoupled decay per step, theta *= 1 - lr * weight_decay (>= 0).
        top_c: buffer capacity C (integer >= 0; 0 disables the buffer, giving AdamW).
        decay: factor applied to every key every step, in [0, 1].
        synced: True: one priority (sum of per-tensor gradient L2 norms) and one buffer decision per
            group; False: one per tensor.
        critical_test: probability in [0, 1] of overwriting a full buffer's min entry unconditionally.
        buffer_dtype: dtype of the stored momenta (None: the parameter dtype).
        generator: CPU `torch.Generator` for the critical_test draws; required when critical_test > 0.

    Raises:
        ValueError: for any argument outside the ranges above, or sparse gradients at `step`.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, top_c: int = 5, decay: float = 0.7,
                 synced: bool = True, critical_test: float = 0.0, buffer_dtype: torch.dtype | None = None,
                 generator: torch.Generator | None = None) -> None:
        _check("lr", lr > 0, lr, "> 0")
        _check("betas", all(0.0 <= b < 1.0 for b in betas), betas, "in [0, 1)")
        _check("eps", eps >= 0, eps, ">= 0")
        _check("weight_decay", weight_decay >= 0, weight_decay, ">= 0")
        _check("top_c", isinstance(top_c, int) and top_c >= 0, top_c, "an integer >= 0")
        _check("decay", 0.0 <= decay <= 1.0, decay, "in [0, 1]")
        _check("critical_test", 0.0 <= critical_test <= 1.0, critical_test, "in [0, 1]")
        _check("generator", critical_test == 0 or generator is not None, generator,
               "a torch.Generator when critical_test > 0 (the global RNG is never used)")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, top_c=top_c, decay=decay,
                        synced=synced, critical_test=critical_test, buffer_dtype=buffer_dtype)
        super().__init__(params, defaults)
        self._generator = generator

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter with a gradient; returns the closure's loss, if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise ValueError("AdamCM: sparse gradients are not supported")
            if params:
                self._group_step(group, params)
        return loss

    def _group_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        b1, _ = group["betas"]
        for p in params:
            state = self._init_state(group, p)
            state["step"] += 1
            p.mul_(1.0 - group["lr"] * group["weight_decay"])
            state["exp_avg"].lerp_(p.grad, 1.0 - b1)
        if group["top_c"] == 0:
            for p in params:  # buffer off: plain AdamW, v from g^2
                self._apply(group, p, self.state[p]["exp_avg"], p.grad)
            return
        # The aggregate uses the buffer before insertion, so compute every m~ first.
        aggregates = [self._aggregate(p) for p in params]
        if group["synced"]:
            owner = self._owner_state(group, group["params"][0])
            priority = sum(torch.linalg.vector_norm(p.grad) for p in params)
            self._insert(group, owner, params, float(priority))
        else:
            for p in params:
                owner = self._owner_state(group, p)
                self._insert(group, owner, [p], float(torch.linalg.vector_norm(p.grad)))
        for p, m_tilde in zip(params, aggregates):
            self._apply(group, p, m_tilde, m_tilde)

    def _init_state(self, group: dict[str, Any], p: torch.Tensor) -> dict[str, Any]:
        state = self.state[p]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["top_c"] > 0:
                dtype = group["buffer_dtype"] or p.dtype
                state["cm_buffer"] = torch.zeros((group["top_c"], *p.shape), dtype=dtype, device=p.device)
                state["cm_filled"] = torch.zeros(group["top_c"], dtype=torch.bool, device=p.device)
        return state

    def _owner_state(self, group: dict[str, Any], owner: torch.Tensor) -> dict[str, Any]:
        """The state holding the keys and counters of one buffer decision stream."""
        state = self.state[owner]
        if "cm_keys" not in state:
            # Keys on the CPU in float64: decisions are host-side and must not drift with the param dtype.
            state["cm_keys"] = torch.zeros(group["top_c"], dtype=torch.float64)
            state.update(cm_size=0, cm_accepted=0, cm_rejected=0)
        return state

    def _aggregate(self, p: torch.Tensor) -> torch.Tensor:
        """m~ = m + mean of the slots this tensor has filled (m itself while none)."""
        state = self.state[p]
        filled = state["cm_filled"]
        if not bool(filled.any()):
            return state["exp_avg"].clone()
        stored = state["cm_buffer"][filled].to(p.dtype)
        return state["exp_avg"] + stored.mean(dim=0)

    def _choose_slot(self, group: dict[str, Any], owner: dict[str, Any], priority: float) -> int | None:
        """The slot to overwrite with a momentum of this priority, or None to reject it."""
        if owner["cm_size"] < group["top_c"]:
            return owner["cm_size"]
        keys = owner["cm_keys"]
        slot = int(torch.argmin(keys))
        if group["critical_test"] > 0:
            draw = float(torch.rand((), generator=self._generator))
            if draw < group["critical_test"]:
                return slot
        return slot if priority > float(keys[slot]) else None

    def _insert(self, group: dict[str, Any], owner: dict[str, Any], params: list[torch.Tensor],
                priority: float) -> None:
        """Buffer insertion (step 6) and key decay (step 9) for one decision stream."""
        slot = self._choose_slot(group, owner, priority)
        if slot is None:
            owner["cm_rejected"] += 1
        else:
            owner["cm_accepted"] += 1
            owner["cm_size"] = max(owner["cm_size"], slot + 1)
            owner["cm_keys"][slot] = priority
            for p in params:
                state = self.state[p]
                state["cm_buffer"][slot].copy_(state["exp_avg"])
                state["cm_filled"][slot] = True
        owner["cm_keys"].mul_(group["decay"])

    def _apply(self, group: dict[str, Any], p: torch.Tensor, m_tilde: torch.Tensor,
               second: torch.Tensor) -> None:
        """Steps 7-8: v from `second` (m~ with the buffer, g without), bias-corrected update of p by m~,
        in the same operation order as torch AdamW."""
        state = self.state[p]
        b1, b2 = group["betas"]
        step = state["step"]
        state["exp_avg_sq"].mul_(b2).addcmul_(second, second, value=1.0 - b2)
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1.0 - b2**step)).add_(group["eps"])
        p.addcdiv_(m_tilde, denom, value=-group["lr"] / (1.0 - b1**step))

    def _owners(self) -> list[dict[str, Any]]:
        return [s for g in self.param_groups for p in g["params"] if "cm_keys" in (s := self.state.get(p, {}))]

    def stats(self) -> dict[str, float]:
        """Buffer diagnostics: total accepted / rejected insertions over all decision streams, and the mean
        buffer fill (entries, 0..C) and mean key (gradient-norm units) over those streams."""
        owners = self._owners()
        n = max(len(owners), 1)
        return {
            "cm/accepted": float(sum(o["cm_accepted"] for o in owners)),
            "cm/rejected": float(sum(o["cm_rejected"] for o in owners)),
            "cm/buffer_size": sum(o["cm_size"] for o in owners) / n,
            "cm/key_mean": sum(float(o["cm_keys"][: o["cm_size"]].mean()) for o in owners if o["cm_size"]) / n,
        }

    def state_dict(self) -> dict[str, Any]:
        """As torch's, plus the critical_test generator's state (`cm_generator`) when there is one."""
        out = super().state_dict()
        if self._generator is not None:
            out["cm_generator"] = self._generator.get_state()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, but the buffer tensors keep their saved dtypes: torch casts every state tensor to
        the parameter dtype, which would turn the bool masks into floats, round the float64 keys and
        undo `buffer_dtype`. The generator (if both sides have one) continues from the saved state."""
        state_dict = dict(state_dict)
        generator_state = state_dict.pop("cm_generator", None)
        if generator_state is not None and self._generator is not None:
            self._generator.set_state(generator_state)
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        for p, i in zip(params, saved_ids):
            for key, value in state_dict["state"].get(i, {}).items():
                if key.startswith("cm_") and isinstance(value, torch.Tensor):
                    device = torch.device("cpu") if key == "cm_keys" else p.device
                    self.state[p][key] = value.to(device=device, copy=True)
