"""Updates that touch only the rows a step looked up, for a large ID embedding (``sparse_id_updates``).

With a dense gradient, a step of a model with a 1M x 128 ID embedding writes a 1M-row gradient, clips it and lets
AdamW update every row (and its two moments), though a step with sampled negatives looks up a few thousand rows:
the step's cost grows with the catalogue. With ``nn.Embedding(sparse=True)`` the gradient holds only the rows looked
up, and ``RowwiseAdamW`` updates only those rows ("lazy" Adam, as ``torch.optim.SparseAdam``): a row's moments decay,
and its weight decay applies, only at the steps that touch it. Every other parameter gets torch's own AdamW step.
"""

from __future__ import annotations

import math

import torch


class RowwiseAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` that also takes sparse gradients: a parameter whose gradient is sparse gets a lazy
    row-wise AdamW step on the rows present (moments, decoupled weight decay and the update on those rows only; the
    bias correction counts the parameter's steps, as ``SparseAdam`` does). Its state has AdamW's keys (``step``,
    ``exp_avg``, ``exp_avg_sq``), so ``state_dict`` and ``load_state_dict`` work as AdamW's do."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held = []
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None and param.grad.is_sparse:
                    self._sparse_step(group, param)
                    held.append((param, param.grad))
                    param.grad = None  # AdamW's own step skips it
        try:
            super().step()
        finally:
            for param, grad in held:
                param.grad = grad
        return loss

    def _sparse_step(self, group: dict, param: torch.Tensor) -> None:
        if group["amsgrad"] or group["maximize"]:
            raise ValueError("RowwiseAdamW's sparse rows support neither amsgrad nor maximize")
        grad = param.grad.coalesce()  # a row looked up twice has two entries: their sum is the row's gradient
        rows, values = grad.indices()[0], grad.values()
        state = self.state[param]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["step"] += 1
        step = float(state["step"])
        lr, (beta1, beta2), eps = float(group["lr"]), group["betas"], group["eps"]
        exp_avg = state["exp_avg"][rows].lerp_(values, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        updated = param[rows].mul_(1 - lr * group["weight_decay"])
        updated.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
        param.index_copy_(0, rows, updated)


def clip_grad_norm_(parameters, max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm) for gradients of which some are sparse, which torch's refuses
    ("Could not run 'aten::linalg_vector_norm' with arguments from the 'SparseCPU' backend"). A sparse gradient is
    coalesced in place first: the norm is that of the rows' summed gradients. Returns the total norm before clipping;
    ``max_norm`` inf only measures it."""
    grads = []
    for param in parameters:
        if param.grad is not None:
            if param.grad.is_sparse:
                param.grad = param.grad.coalesce()
            grads.append(param.grad)
    if not grads:
        return torch.tensor(0.0)
    norms = [(g.values() if g.is_sparse else g).detach().float().norm() for g in grads]
    total = torch.linalg.vector_norm(torch.stack(norms))
    if math.isfinite(max_norm):
        scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for grad in grads:
            (grad.values() if grad.is_sparse else grad).mul_(scale.to(grad.dtype))
    return total
