"""Adversarial perturbations of the encoder's input word embeddings (FGM and PGD), for training and for attacks.

The perturbation is added to the *output* of the word-embedding layer by a forward hook, never written into a weight:
it works the same under PEFT (the embedding matrix stays frozen and bit-identical), under DDP, and leaves nothing to
restore. Sizes are relative to each token's own embedding norm, so one ε means the same on any encoder:
``delta_t = ε · ‖e_t‖ · g_t / ‖g_t‖`` (FGM, one step); PGD takes ``steps`` steps of size ``α`` and projects every token
back into its ε-ball.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from recpipe.errors import InvalidInputError


class EmbeddingPerturbation:
    """A forward hook on an encoder's input embeddings. Inside ``probe()`` the first forward adds a zero tensor that
    requires grad (so the loss's gradient with respect to the embeddings can be taken even when they are frozen);
    inside ``apply(delta)`` the first forward adds ``delta``. Outside both, the hook returns the output untouched.

    Only the first encoder pass of a model forward is the item text that the rec loss sees; a second one (the masked
    copy of ``mlm_on_copy``) is left alone."""

    def __init__(self, embeddings: nn.Module):
        self.embeddings = embeddings
        self.mode: str | None = None
        self.delta: torch.Tensor | None = None
        self.token_norms: torch.Tensor | None = None
        self._calls = 0  # encoder passes since probe()/apply() began
        self._handle = embeddings.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self._calls += 1
        if self._calls > 1:
            return None
        if self.mode == "probe":
            self.token_norms = output.detach().float().norm(dim=-1, keepdim=True)
            self.delta = torch.zeros_like(output, requires_grad=True)
            return output + self.delta
        if self.mode == "apply":
            if self.delta.shape != output.shape:
                shapes = f"{list(self.delta.shape)} vs {list(output.shape)}"
                raise RuntimeError(f"perturbation and embeddings differ in shape: {shapes}")
            return output + self.delta.to(output.dtype)
        return None

    @contextmanager
    def probe(self):
        self.mode, self.delta, self._calls = "probe", None, 0
        try:
            yield self
        finally:
            self.mode = None

    @contextmanager
    def apply(self, delta: torch.Tensor):
        self.mode, self.delta, self._calls = "apply", delta, 0
        try:
            yield self
        finally:
            self.mode, self.delta = None, None

    def remove(self) -> None:
        self._handle.remove()


def input_embeddings(encoder: nn.Module) -> nn.Module:
    """The word-embedding layer of a (PEFT-wrapped) Hugging Face encoder."""
    return encoder.get_input_embeddings()


def unit(g: torch.Tensor) -> torch.Tensor:
    """``g`` scaled to unit norm along its last dimension (zero stays zero)."""
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def adversarial_delta(
    loss_at: Callable[[torch.Tensor | None], torch.Tensor],
    first_loss: torch.Tensor,
    probe_delta: torch.Tensor,
    token_norms: torch.Tensor,
    method: str,
    epsilon: float,
    alpha: float,
    steps: int,
) -> torch.Tensor:
    """The worst-case perturbation (first order) in each token's ε-ball.

    ``first_loss`` was computed with ``probe_delta`` (zeros, requires grad) added to the embeddings;
    ``loss_at(delta)`` recomputes the loss with a detached ``delta`` made to require grad (PGD only).
    """
    radius = epsilon * token_norms
    (grad,) = torch.autograd.grad(first_loss, probe_delta, retain_graph=True)
    if method == "fgm":
        return (radius * unit(grad.float())).detach()
    if method != "pgd":
        raise InvalidInputError(f"unknown adversarial method {method!r}: use fgm or pgd")
    delta = torch.zeros_like(grad, dtype=torch.float32)
    for step in range(steps):
        if step > 0:
            delta.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss_at(delta), delta)
        delta = delta.detach() + alpha * token_norms * unit(grad.float())
        # projection onto each token's ball of radius ε‖e_t‖
        delta = delta * (radius / delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    return delta.detach()
