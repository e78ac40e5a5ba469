"""Sampled ranking: each target against a few sampled negatives. Only where a protocol asks for it: it inflates every
figure, so every key says how it was sampled (``ndcg@10_sampled100``, ``..._sampled100pop``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from recpipe.metrics.ranking import (
    ExcludeLists,
    TieBreak,
    check_targets,
    flatten_exclusions,
    ranking_metrics,
    target_ranks,
)


def sample_negatives(
    num_items: int,
    targets: torch.Tensor,
    num_negatives: int,
    strategy: Literal["uniform", "popularity"] = "uniform",
    popularity: torch.Tensor | None = None,
    exclude: ExcludeLists | None = None,
    exclude_padding: bool = True,
    generator: torch.Generator | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Sample negatives per user, without replacement, for sampled ranking (only when the protocol asks for it).

    A negative is never the user's target, never the padding index 0 (with `exclude_padding`), and never in the
    user's `exclude` list.

    Args:
        num_items (`int`):
            Catalogue size N (including the padding index).
        targets (`torch.LongTensor` of shape `[U]`):
            Each user's target.
        num_negatives (`int`):
            Negatives per user.
        strategy (`str`, defaults to `"uniform"`):
            `"uniform"` over allowed items, or `"popularity"`: proportional to `popularity`.
        popularity (`torch.Tensor` of shape `[N]`, *optional*):
            Non-negative item weights; required for `strategy="popularity"`.
        exclude (`list[list[int]]`, *optional*):
            Per-user items that must not be sampled (e.g. the history).
        exclude_padding (`bool`, defaults to `True`):
            Never sample index 0.
        generator (`torch.Generator`, *optional*):
            Random source, for reproducible samples.
        chunk_size (`int`, defaults to 1024):
            Users sampled at once (memory is `chunk_size x N`).

    Returns:
        `torch.LongTensor` of shape `[U, num_negatives]`.
    """
    if strategy not in ("uniform", "popularity"):
        raise ValueError(f"strategy must be 'uniform' or 'popularity', got {strategy!r}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    targets = torch.as_tensor(targets).cpu()
    num_users = targets.numel()
    check_targets(targets, num_users, num_items)
    if strategy == "popularity":
        if popularity is None:
            raise ValueError("strategy='popularity' needs popularity")
        base = torch.as_tensor(popularity, dtype=torch.float64)
        if base.shape != (num_items,) or (base < 0).any() or not torch.isfinite(base).all():
            raise ValueError(f"popularity must be finite, non-negative, of shape [{num_items}]")
    else:
        base = torch.ones(num_items, dtype=torch.float64)
    offsets = rows = cols = None
    if exclude is not None:
        offsets, rows, cols = flatten_exclusions(exclude, num_users, num_items, torch.device("cpu"))

    out = torch.empty((num_users, num_negatives), dtype=torch.long)
    for start in range(0, num_users, chunk_size):
        end = min(start + chunk_size, num_users)
        weights = base.expand(end - start, num_items).clone()
        if exclude_padding:
            weights[:, 0] = 0
        if cols is not None:
            lo, hi = int(offsets[start]), int(offsets[end])
            weights[rows[lo:hi] - start, cols[lo:hi]] = 0
        weights[torch.arange(end - start), targets[start:end]] = 0
        available = (weights > 0).sum(1)
        if (available < num_negatives).any():
            user = start + int((available < num_negatives).nonzero()[0])
            raise ValueError(
                f"user {user} has only {int(available[user - start])} items to sample from, fewer than "
                f"num_negatives={num_negatives}"
            )
        out[start:end] = torch.multinomial(weights, num_negatives, replacement=False, generator=generator)
    return out


def sampled_ranking_metrics(
    target_scores: torch.Tensor,
    negative_scores: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    strategy: Literal["uniform", "popularity"] = "uniform",
    tie_break: TieBreak = "pessimistic",
    generator: torch.Generator | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """Ranking metrics of each target against its sampled negatives; every key says how it was sampled.

    Args:
        target_scores (`torch.Tensor` of shape `[U]`):
            Score of each user's target.
        negative_scores (`torch.Tensor` of shape `[U, n]`):
            Scores of the user's negatives (e.g. from [`sample_negatives`]).
        ks (`Sequence[int]`, defaults to `(1, 5, 10)`):
            Cut-offs.
        strategy (`str`, defaults to `"uniform"`):
            How the negatives were sampled; sets the key suffix: `_sampled{n}` (uniform) or `_sampled{n}pop`.
        tie_break (`str`, defaults to `"pessimistic"`), generator (`torch.Generator`, *optional*):
            See [`target_ranks`].
        prefix (`str`, defaults to `""`):
            Added before every key.

    Returns:
        `dict[str, float]` as [`ranking_metrics`], keys like `ndcg@10_sampled100`.
    """
    if strategy not in ("uniform", "popularity"):
        raise ValueError(f"strategy must be 'uniform' or 'popularity', got {strategy!r}")
    target_scores = torch.as_tensor(target_scores)
    negative_scores = torch.as_tensor(negative_scores)
    if negative_scores.dim() != 2 or target_scores.shape != negative_scores.shape[:1]:
        raise ValueError(
            f"target_scores [U] and negative_scores [U, n] do not match: {list(target_scores.shape)} and "
            f"{list(negative_scores.shape)}"
        )
    num_users, num_negatives = negative_scores.shape
    scores = torch.cat([target_scores[:, None].to(negative_scores.dtype), negative_scores], dim=1)
    targets = torch.zeros(num_users, dtype=torch.long, device=scores.device)
    ranks = target_ranks(scores, targets, tie_break=tie_break, generator=generator)
    suffix = f"_sampled{num_negatives}" + ("pop" if strategy == "popularity" else "")
    return ranking_metrics(ranks, ks, num_candidates=num_negatives + 1, prefix=prefix, suffix=suffix)
