"""Losses as ``nn.Module``s; ``CombinedLoss`` returns the named parts, unweighted, and their weights
(``CombinedLoss.weights``, the run's ``*_weight`` arguments); ``RecTrainer`` logs each part as it is and sums

L = w_rec·L_rec + λ_mlm·L_mlm + λ_rel·L_rel + λ_cold·L_cold (+ AdaLoRA's orthogonality regulariser)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recpipe.errors import InvalidInputError


class SoftmaxRecLoss(nn.Module):
    """Next-item softmax at every position of the user sequences.

    ``negatives``: ``full`` scores the whole catalogue (exact; padding and never-trained items excluded);
    ``in_batch`` scores the batch's targets; ``sampled`` adds ``num_negatives`` items drawn by popularity. The last
    two subtract ``log q`` (the candidate's sampling probability, popularity) so that popular items are not
    over-penalised (logQ correction).
    """

    def __init__(self, temperature: float, negatives: str = "full", num_negatives: int = 1024, logq: bool = True):
        super().__init__()
        self.temperature, self.negatives, self.num_negatives, self.logq = temperature, negatives, num_negatives, logq

    def forward(self, model, user_states, table, targets, popularity: torch.Tensor | None = None) -> torch.Tensor:
        valid = targets > 0
        users, targets = user_states[valid], targets[valid]
        if self.negatives == "full":
            logits = model.scores(users, table) / self.temperature
            logits[:, 0] = float("-inf")
            if popularity is not None:
                # Items that never occur in training (cold-start items) are no negatives either: as eternal
                # negatives the model would learn to bury exactly the items it must rank by their text.
                logits[:, popularity == 0] = float("-inf")
            return F.cross_entropy(logits.float(), targets)
        candidates = torch.unique(targets)
        if self.negatives == "sampled":
            if popularity is None:
                raise InvalidInputError("sampled negatives need item popularity")
            drawn = self._draw(popularity)
            candidates = torch.unique(torch.cat([candidates, drawn]))
        logits = model.scores(users, table[candidates]) / self.temperature
        if self.logq and popularity is not None:
            q = popularity[candidates].float().clamp(min=1) / self._cumulative(popularity)[-1]
            logits = logits - torch.log(q)
        labels = torch.searchsorted(candidates, targets)
        return F.cross_entropy(logits.float(), labels)

    def _cumulative(self, popularity: torch.Tensor) -> torch.Tensor:
        """Running sums of the popularity of items 1..N, computed once: a step draws its negatives by binary
        search in them (``torch.multinomial`` would rebuild them over the whole catalogue every step)."""
        cached = getattr(self, "_cumsum", None)
        if cached is None or cached[0] is not popularity:
            self._cumsum = (popularity, torch.cumsum(popularity[1:].double(), 0))
        return self._cumsum[1]

    def _draw(self, popularity: torch.Tensor) -> torch.Tensor:
        """``num_negatives`` item indices drawn with replacement in proportion to popularity."""
        cumulative = self._cumulative(popularity)
        u = torch.rand(self.num_negatives, dtype=torch.float64, device=cumulative.device) * cumulative[-1]
        return torch.searchsorted(cumulative, u, right=True).clamp(max=len(cumulative) - 1) + 1


class ItemRelationLoss(nn.Module):
    """In-batch InfoNCE on item–item relations: items that follow each other in histories are positives, every other
    fresh item of the batch a negative. Symmetric (a→b and b→a)."""

    def __init__(self, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature

    def forward(self, vectors: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        if pairs.numel() == 0:
            return vectors.sum() * 0.0
        z = F.normalize(vectors, dim=-1)
        sim = (z @ z.T / self.temperature).float()
        sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
        i, j = pairs[:, 0], pairs[:, 1]
        return 0.5 * (F.cross_entropy(sim[i], j) + F.cross_entropy(sim[j], i))


class CombinedLoss(nn.Module):
    """Computes every part the batch allows (and whose weight is not 0) and returns them unweighted, by name;
    ``total(parts)`` is the weighted sum."""

    def __init__(self, args, popularity: torch.Tensor | None = None):
        super().__init__()
        self.weights = {
            "rec_loss": args.rec_weight,
            "mlm_loss": args.mlm_weight,
            "rel_loss": args.rel_weight,
            "cold_loss": args.cold_weight,
        }
        self.rec = SoftmaxRecLoss(args.temperature, args.negatives, args.num_negatives, args.logq_correction)
        self.cold_loss_type, self.cold_rank_share = args.cold_loss_type, args.cold_rank_share
        self.rel = ItemRelationLoss(args.rel_temperature)
        self.register_buffer("popularity", popularity, persistent=False)

    def forward(self, model, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        parts = {}
        if "user_states" in outputs and self.weights["rec_loss"] > 0:
            parts["rec_loss"] = self.rec(
                model, outputs["user_states"], outputs["item_table"], batch["target_items"], self.popularity
            )
        if outputs.get("mlm_loss") is not None and self.weights["mlm_loss"] > 0:
            parts["mlm_loss"] = outputs["mlm_loss"]
        if outputs.get("fresh_pooled") is not None and self.weights["rel_loss"] > 0:
            vectors = model.projection(outputs["fresh_pooled"])
            parts["rel_loss"] = self.rel(vectors, batch["rel_pairs"])
        if "user_states" in outputs and getattr(model, "id_from_text", None) is not None and self.weights["cold_loss"]:
            parts["cold_loss"] = self.cold_start_loss(model, outputs, batch)
        if not parts:
            raise InvalidInputError("no loss part applies to this batch: check the loss weights and the stage")
        return parts

    def cold_start_loss(self, model, outputs: dict, batch: dict) -> torch.Tensor:
        """``cold_regression_loss`` or ``cold_ranking_loss`` (``cold_loss_type``)."""
        if self.cold_loss_type == "rank":
            return self.cold_ranking_loss(model, outputs, batch)
        return self.cold_regression_loss(model, batch)

    def cold_ranking_loss(self, model, outputs: dict, batch: dict) -> torch.Tensor:
        """The rec loss with a random share of the warm items (``cold_rank_share``) scored as cold items are —
        projected text + the ID vector ``id_from_text`` predicts — among the other items' trained vectors, every
        input but the map detached: the warm model trains as without it, and the predictions learn the scale at
        which a cold item should rank. Because the share holds negatives as well as targets, "predicted" does not
        mean "target" (the failure of ranking only the targets' predicted vectors, see ``cold_regression_loss``)."""
        table = outputs["item_table"]
        if not isinstance(table, torch.Tensor):  # ItemRows (sampled or in-batch negatives): every row
            table = table[torch.arange(model.num_items + 1, device=batch["target_items"].device)]
        text = model.text_cache.detach()
        cold = model.projection(text).detach() + model.id_from_text(text)
        # drawn on a fork of the RNG: the warm model's dropout draws stay as they would be without this part
        device = table.device
        with torch.random.fork_rng(devices=[device] if device.type != "cpu" else [], device_type=device.type):
            share = torch.rand(len(table), device=device) < self.cold_rank_share
        share &= model.id_gate > 0  # warm items only; the real cold items are no candidates of the rec loss
        mixed = torch.where(share[:, None], cold.to(table.dtype), table.detach())
        return self.rec(model, outputs["user_states"].detach(), mixed, batch["target_items"], self.popularity)

    def cold_regression_loss(self, model, batch: dict) -> torch.Tensor:
        """Teach ``id_from_text`` the trained ID vectors of the batch's target items from their text (mean squared
        error against the detached ID vectors): a cold item then scores as a warm item with that text would, on the
        warm items' scale. Only the map learns from it, so the warm model trains as without it (the trainer clips the
        map's gradient apart from the others').

        Ranking losses were tried first and fail by construction: with the positive always a predicted vector, the
        map learns that "predicted" means "target" and lifts every predicted vector above the warm ones (valid
        NDCG@10 near 0 at step 200)."""
        targets = torch.unique(batch["target_items"])
        targets = targets[(targets > 0) & (model.id_gate[targets] > 0)]
        predicted = model.id_from_text(model.text_cache.detach()[targets])
        return F.mse_loss(predicted.float(), model.id_embedding.weight.detach()[targets].float())

    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[name] * value for name, value in parts.items())
