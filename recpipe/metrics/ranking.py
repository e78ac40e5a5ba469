"""Full ranking (next-item retrieval): every user's held-out target ranked against the whole catalogue.

Protocol. Every user has one held-out target item. Its 0-based rank is computed among the items that are not excluded
(the padding index 0, and the user's history where the protocol says so); excluded items can never be ranked above
the target. Full ranking over the catalogue is the default; sampled ranking (:mod:`recpipe.metrics.sampled`) is
available but its keys say so, since it inflates every figure.

Two traps a naive ``rank = (scores > scores[target]).sum()`` falls into, and which :func:`target_ranks` avoids:

- a row of NaN scores compares False everywhere, so the target gets rank 0: a broken model scores a perfect hit.
  Here any NaN/inf among the ranked items is an error.
- items tied with the target are counted as below it, so a model that scores everything equal (e.g. a collapsed
  embedding) gets rank 0 for every user. Here ties count against the model (``tie_break="pessimistic"``) or are
  broken uniformly at random (``tie_break="random"``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

TieBreak = Literal["pessimistic", "random"]
ExcludeLists = Sequence[Sequence[int]]


def check_tie_break(tie_break: str) -> None:
    if tie_break not in ("pessimistic", "random"):
        raise ValueError(f"tie_break must be 'pessimistic' or 'random', got {tie_break!r}")


def check_targets(targets: torch.Tensor, num_users: int, num_items: int) -> None:
    if targets.dim() != 1 or targets.numel() != num_users:
        raise ValueError(f"targets must have shape [{num_users}], got {list(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer item indices, got dtype {targets.dtype}")
    out_of_range = (targets < 0) | (targets >= num_items)
    if out_of_range.any():
        n = int(out_of_range.sum())
        raise ValueError(f"{n} target(s) out of range [0, {num_items}), e.g. {int(targets[out_of_range][0])}")


def _ranks_from_masked(
    scores: torch.Tensor, targets: torch.Tensor, tie_break: str, uniform: torch.Tensor | None
) -> torch.Tensor:
    """Ranks of ``targets`` in ``scores`` whose excluded entries are already ``-inf`` (target scores finite)."""
    target_scores = scores.gather(1, targets[:, None])
    if tie_break == "pessimistic":
        # strictly higher + tied others == (>=) minus the target itself; one pass over the scores.
        return (scores >= target_scores).sum(1, dtype=torch.int32).long() - 1
    higher = (scores > target_scores).sum(1, dtype=torch.int32).long()
    ties = (scores == target_scores).sum(1, dtype=torch.int32).long() - 1
    offset = torch.minimum((uniform * (ties + 1)).long(), ties)
    return higher + offset


def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=gen_device, dtype=torch.float64).to(device)


def target_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None = None,
    tie_break: TieBreak = "pessimistic",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """0-based rank of each user's target among the items that are not excluded.

    A naive ``(scores > scores[target]).sum()`` counts a NaN row as a perfect hit (NaN compares False) and breaks
    ties in the model's favour; this function raises on non-finite scores and breaks ties against the model
    (``"pessimistic"``) or uniformly at random (``"random"``).

    Args:
        scores (`torch.Tensor` of shape `[U, N]`):
            Scores of every catalogue item for every user; higher is better.
        targets (`torch.LongTensor` of shape `[U]`):
            Index of each user's held-out item.
        exclude (`torch.BoolTensor` of shape `[U, N]`, *optional*):
            `True` for items that must not be ranked (padding, history). Their scores are ignored, so they may hold
            `-inf` masks or anything else; they can never rank above the target.
        tie_break (`str`, defaults to `"pessimistic"`):
            `"pessimistic"`: rank = #items scoring strictly higher + #other items scoring equal. `"random"`:
            #strictly higher + a uniform integer in `[0, #ties]`.
        generator (`torch.Generator`, *optional*):
            Random source for `tie_break="random"` (one draw per user, so results do not depend on batching).

    Returns:
        `torch.LongTensor` of shape `[U]`: the ranks, in `[0, #non-excluded items - 1]`.

    Raises:
        ValueError: if a row has NaN/inf among its non-excluded scores (the message says how many rows), if a target
            is excluded, or if a target is out of range.
    """
    check_tie_break(tie_break)
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape [U, N], got {list(scores.shape)}")
    num_users, num_items = scores.shape
    targets = torch.as_tensor(targets, device=scores.device)
    check_targets(targets, num_users, num_items)
    if exclude is not None:
        exclude = torch.as_tensor(exclude, device=scores.device)
        if exclude.shape != scores.shape or exclude.dtype != torch.bool:
            raise ValueError(f"exclude must be a bool tensor of shape {list(scores.shape)}")
        excluded_targets = exclude.gather(1, targets[:, None]).squeeze(1)
        if excluded_targets.any():
            n = int(excluded_targets.sum())
            raise ValueError(f"the target is excluded for {n} user(s), e.g. user {int(excluded_targets.nonzero()[0])}")
    finite = torch.isfinite(scores)
    if exclude is not None:
        finite |= exclude
    bad_rows = ~finite.all(1)
    if bad_rows.any():
        raise ValueError(
            f"{int(bad_rows.sum())} of {num_users} score rows contain NaN or inf among the ranked items "
            f"(e.g. row {int(bad_rows.nonzero()[0])}); a naive rank would count them as hits"
        )
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    uniform = _uniform(num_users, generator, scores.device) if tie_break == "random" else None
    return _ranks_from_masked(scores, targets, tie_break, uniform)


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of positive integers, got {ks}")
    return ks


def ranking_metrics(
    ranks: torch.Tensor,
    ks: Sequence[int] = (5, 10, 20),
    num_candidates: int | torch.Tensor | None = None,
    prefix: str = "",
    suffix: str = "",
) -> dict[str, float]:
    """Recall/HR, NDCG, MRR and precision at each K, plus untruncated MRR, averaged over users.

    With a single held-out target per user, recall@k and hit rate@k are the same number; both keys are reported.
    Per user: ``ndcg@k = 1 / log2(rank + 2)`` and ``mrr@k = 1 / (rank + 1)`` if ``rank < k`` else 0,
    ``precision@k = hit / k``. K larger than the catalogue is allowed: the metrics saturate.

    Args:
        ranks (`torch.LongTensor` of shape `[U]`):
            0-based rank of each user's target (e.g. from [`target_ranks`]).
        ks (`Sequence[int]`, defaults to `(5, 10, 20)`):
            Cut-offs.
        num_candidates (`int` or `torch.LongTensor` of shape `[U]`, *optional*):
            Number of items each target was ranked among; when given, ranks are checked to lie below it.
        prefix (`str`, defaults to `""`), suffix (`str`, defaults to `""`):
            Added around every key, e.g. `prefix="eval_"`, `suffix="_sampled100"`.

    Returns:
        `dict[str, float]` with keys `recall@k`, `hr@k`, `ndcg@k`, `mrr@k`, `precision@k` for each k, and `mrr`.
    """
    ks = check_ks(ks)
    ranks = torch.as_tensor(ranks)
    if ranks.numel() == 0:
        raise ValueError("ranking_metrics got no ranks (empty input)")
    if ranks.dtype.is_floating_point or ranks.dtype == torch.bool:
        raise ValueError(f"ranks must be integers, got dtype {ranks.dtype}")
    ranks = ranks.reshape(-1).to(torch.float64)
    if (ranks < 0).any():
        raise ValueError("ranks must be >= 0")
    if num_candidates is not None:
        num_candidates = torch.as_tensor(num_candidates, device=ranks.device)
        if (ranks >= num_candidates).any():
            raise ValueError("a rank is >= its number of candidates")
    out: dict[str, float] = {}
    reciprocal = 1.0 / (ranks + 1.0)
    discount = 1.0 / torch.log2(ranks + 2.0)
    for k in ks:
        hit = (ranks < k).to(torch.float64)
        recall = hit.mean().item()
        out[f"{prefix}recall@{k}{suffix}"] = recall
        out[f"{prefix}hr@{k}{suffix}"] = recall
        out[f"{prefix}ndcg@{k}{suffix}"] = (hit * discount).mean().item()
        out[f"{prefix}mrr@{k}{suffix}"] = (hit * reciprocal).mean().item()
        out[f"{prefix}precision@{k}{suffix}"] = recall / k
    out[f"{prefix}mrr{suffix}"] = reciprocal.mean().item()
    return out


def flatten_exclusions(
    exclude: ExcludeLists, num_users: int, num_items: int, device: torch.device
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Per-user index lists -> (offsets [U+1] on the host, user rows [M], item columns [M]), range-checked."""
    if len(exclude) != num_users:
        raise ValueError(f"exclude has {len(exclude)} lists for {num_users} users")
    lengths = np.fromiter((len(x) for x in exclude), dtype=np.int64, count=num_users)
    cols = np.fromiter(itertools.chain.from_iterable(exclude), dtype=np.int64, count=int(lengths.sum()))
    if cols.size and (cols.min() < 0 or cols.max() >= num_items):
        raise ValueError(f"exclude holds item indices out of range [0, {num_items})")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    lengths_t = torch.from_numpy(lengths).to(device)
    rows = torch.repeat_interleave(torch.arange(num_users, device=device), lengths_t)
    return offsets, rows, torch.from_numpy(cols).to(device)


def check_targets_not_excluded_(
    targets: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None, exclude_padding: bool
) -> None:
    if exclude_padding and (targets == 0).any():
        n = int((targets == 0).sum())
        raise ValueError(f"{n} target(s) are the padding index 0, which exclude_padding=True excludes")
    if cols is None:
        return
    clash = cols == targets[rows]
    if clash.any():
        users = torch.unique(rows[clash])
        raise ValueError(
            f"the target is in the exclusion list of {users.numel()} user(s), e.g. user {int(users[0])}: "
            "the held-out item must not be part of the history that is masked"
        )


def full_ranking_metrics(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: torch.Tensor,
    exclude: ExcludeLists | None = None,
    exclude_padding: bool = True,
    ks: Sequence[int] = (5, 10, 20),
    chunk_size: int = 1024,
    tie_break: TieBreak = "pessimistic",
    generator: torch.Generator | None = None,
    item_popularity: torch.Tensor | None = None,
    return_topk: bool = False,
    prefix: str = "",
    item_block_size: int | None = 65_536,
) -> dict[str, float] | tuple[dict[str, float], torch.Tensor]:
    """Full-ranking metrics: every user's target ranked against the whole catalogue by dot-product score.

    Scores are computed for `chunk_size` users against `item_block_size` items at a time, so memory stays at
    `chunk_size x item_block_size` scores whatever the sizes of the catalogue and the user base: a rank is a count
    of items scoring above the target, summed over the blocks, and the top-k lists are merged block by block; the
    metrics are the same for every block size. Excluded items (index 0 when `exclude_padding`, and each user's
    `exclude` list) get `-inf` and can never rank above the target.

    Args:
        user_vectors (`torch.Tensor` of shape `[U, d]`):
            User (query / history) representations.
        item_vectors (`torch.Tensor` of shape `[N, d]`):
            Item representations for the whole catalogue, row 0 being padding when `exclude_padding`.
        targets (`torch.LongTensor` of shape `[U]`):
            Each user's held-out item.
        exclude (`list[list[int]]`, *optional*):
            Per-user item indices not to rank (e.g. the history, where the protocol masks it). An empty list
            excludes nothing for that user. A target inside its user's list raises.
        exclude_padding (`bool`, defaults to `True`):
            Exclude item index 0 (padding) for every user.
        ks (`Sequence[int]`, defaults to `(5, 10, 20)`):
            Cut-offs.
        chunk_size (`int`, defaults to 1024):
            Users scored at once.
        tie_break (`str`, defaults to `"pessimistic"`):
            See [`target_ranks`].
        generator (`torch.Generator`, *optional*):
            Random source for `tie_break="random"`.
        item_popularity (`torch.Tensor` of shape `[N]`, *optional*):
            Interaction counts per item; when given, `coverage@k` and `avg_popularity@k` (see
            [`beyond_accuracy_metrics`]) are added to the result.
        return_topk (`bool`, defaults to `False`):
            Also return the top-`max(ks)` item lists.
        prefix (`str`, defaults to `""`):
            Added before every key.
        item_block_size (`int`, *optional*, defaults to 65536):
            Items scored at once; None scores the whole catalogue at once.

    Returns:
        The metric dict of [`ranking_metrics`] (plus beyond-accuracy metrics with `item_popularity`), and with
        `return_topk` a `torch.LongTensor` of shape `[U, min(max(ks), N)]` of item indices, best first, `-1` where a
        user has fewer rankable items than that.
    """
    check_tie_break(tie_break)
    ks = check_ks(ks)
    if chunk_size < 1 or (item_block_size is not None and item_block_size < 1):
        raise ValueError(f"chunk_size and item_block_size must be >= 1, got {chunk_size} and {item_block_size}")
    if user_vectors.dim() != 2 or item_vectors.dim() != 2 or user_vectors.shape[1] != item_vectors.shape[1]:
        raise ValueError(
            f"user_vectors [U, d] and item_vectors [N, d] must share d, got {list(user_vectors.shape)} and "
            f"{list(item_vectors.shape)}"
        )
    num_users, num_items = user_vectors.shape[0], item_vectors.shape[0]
    if num_users == 0:
        raise ValueError("full_ranking_metrics got no users (empty input)")
    device = user_vectors.device
    targets = torch.as_tensor(targets, device=device)
    check_targets(targets, num_users, num_items)
    offsets = rows = cols = None
    if exclude is not None:
        offsets, rows, cols = flatten_exclusions(exclude, num_users, num_items, device)
    check_targets_not_excluded_(targets, rows, cols, exclude_padding)
    uniform = _uniform(num_users, generator, device) if tie_break == "random" else None
    want_topk = return_topk or item_popularity is not None
    topk_k = min(max(ks), num_items)
    item_t = item_vectors.t()

    ranks = torch.empty(num_users, dtype=torch.long, device=device)
    topk = torch.empty((num_users, topk_k), dtype=torch.long, device=device) if want_topk else None
    block = item_block_size or num_items
    bad_rows = 0
    for start in range(0, num_users, chunk_size):
        end = min(start + chunk_size, num_users)
        users, chunk_targets = user_vectors[start:end], targets[start:end]
        if block < num_items:
            # The target's score before any block is counted, computed as a matrix product like every other score
            # (an elementwise dot product rounds differently: a collapsed model's equal scores would stop tying).
            target_scores = (users @ item_vectors[chunk_targets].t()).diagonal()
            bad = ~torch.isfinite(target_scores)
        higher = torch.zeros(end - start, dtype=torch.long, device=device)
        ties = torch.zeros(end - start, dtype=torch.long, device=device)
        user_rows = torch.arange(end - start, device=device)
        if cols is not None:
            lo, hi = int(offsets[start]), int(offsets[end])
            chunk_rows, chunk_cols = rows[lo:hi] - start, cols[lo:hi]
        best = None
        for b0 in range(0, num_items, block):
            b1 = min(b0 + block, num_items)
            scores = users @ item_t[:, b0:b1]
            if block >= num_items:  # one block: the target's score is in it
                target_scores = scores.gather(1, chunk_targets[:, None]).squeeze(1)
                bad = ~torch.isfinite(target_scores)
            padding = exclude_padding and b0 == 0
            if cols is not None and block >= num_items:
                excluded = (chunk_rows, chunk_cols)
            elif cols is not None:
                inside = (chunk_cols >= b0) & (chunk_cols < b1)
                excluded = (chunk_rows[inside], chunk_cols[inside] - b0)
            own = (chunk_targets >= b0) & (chunk_targets < b1)
            own = (user_rows[own], chunk_targets[own] - b0)
            # NaN/inf propagate through a row sum, so this cheap test passes only for all-finite rows (a finite sum
            # that overflows only sends us to the exact test, which ignores excluded entries and the target).
            if not torch.isfinite(scores.sum(1)).all():
                finite = torch.isfinite(scores)
                finite[:, 0] |= padding
                if cols is not None:
                    finite[excluded] = True
                finite[own] = True
                bad |= ~finite.all(1)
            if padding:
                scores[:, 0] = float("-inf")
            if cols is not None:
                scores[excluded] = float("-inf")
            if topk is not None:
                best = _merge_topk(best, scores, b0, topk_k)
            if block < num_items:
                scores[own] = float("-inf")  # the target is not counted against itself...
            if tie_break == "pessimistic":  # ties count against the model: one comparison pass
                higher += (scores >= target_scores[:, None]).sum(1)
            else:
                higher += (scores > target_scores[:, None]).sum(1)
                ties += (scores == target_scores[:, None]).sum(1)
        if block >= num_items:  # ...or is, once, as a tie with itself
            (higher if tie_break == "pessimistic" else ties).sub_(1)
        bad_rows += int(bad.sum())
        if tie_break == "pessimistic":
            ranks[start:end] = higher
        else:
            ranks[start:end] = higher + torch.minimum((uniform[start:end] * (ties + 1)).long(), ties)
        if topk is not None:
            values, indices = best
            topk[start:end] = indices.masked_fill(values == float("-inf"), -1)
    if bad_rows:
        raise ValueError(
            f"{bad_rows} of {num_users} score rows contain NaN or inf among the ranked items; "
            "a naive rank would count them as hits"
        )

    metrics = ranking_metrics(ranks, ks, prefix=prefix)
    if item_popularity is not None:
        recommendable = num_items - int(exclude_padding)
        metrics.update(beyond_accuracy_metrics(topk, recommendable, item_popularity, ks=ks, prefix=prefix))
    return (metrics, topk) if return_topk else metrics


def _merge_topk(best, scores: torch.Tensor, offset: int, k: int):
    """The best ``k`` (values, item indices) per row of the blocks so far and this one (``scores``, whose first column
    is item ``offset``); among equal scores the earlier block's items stay first (a stable sort)."""
    values, indices = scores.topk(min(k, scores.shape[1]), dim=1)
    indices = indices + offset
    if best is not None:
        values, indices = torch.cat([best[0], values], 1), torch.cat([best[1], indices], 1)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
        values, indices = values.gather(1, order), indices.gather(1, order)
    return values, indices


def beyond_accuracy_metrics(
    topk: torch.Tensor,
    num_items: int,
    item_popularity: torch.Tensor,
    ks: Sequence[int] | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """Catalogue coverage and popularity bias of top-k recommendation lists.

    Args:
        topk (`torch.LongTensor` of shape `[U, k]`):
            Recommended item indices per user, best first; `-1` marks an empty slot and is ignored.
        num_items (`int`):
            Number of recommendable items (the coverage denominator; leave out the padding index).
        item_popularity (`torch.Tensor` of shape `[N]`):
            Popularity (e.g. training interaction count) of every item index.
        ks (`Sequence[int]`, *optional*):
            Cut-offs, each applied to the first k columns of `topk`; defaults to `topk.shape[1]`.
        prefix (`str`, defaults to `""`):
            Added before every key.

    Returns:
        `dict[str, float]` with `coverage@k` (fraction of the `num_items` items recommended to at least one user)
        and `avg_popularity@k` (mean popularity of the recommended items divided by the maximum popularity: 1.0
        means everyone is shown the most popular item only).
    """
    topk = torch.as_tensor(topk)
    if topk.dim() != 2:
        raise ValueError(f"topk must have shape [U, k], got {list(topk.shape)}")
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    popularity = torch.as_tensor(item_popularity, device=topk.device).to(torch.float64)
    max_popularity = popularity.max().item() if popularity.numel() else 0.0
    if max_popularity <= 0 or (popularity < 0).any():
        raise ValueError("item_popularity must be non-negative with a positive maximum")
    if topk.numel() and int(topk.max()) >= popularity.numel():
        raise ValueError(f"topk holds item indices beyond item_popularity's {popularity.numel()} entries")
    ks = check_ks(ks if ks is not None else (topk.shape[1],))
    out: dict[str, float] = {}
    for k in ks:
        items = topk[:, :k].reshape(-1)
        times_recommended = torch.bincount(items[items >= 0], minlength=popularity.numel()).to(torch.float64)
        total = times_recommended.sum().item()
        out[f"{prefix}coverage@{k}"] = int((times_recommended > 0).sum()) / num_items
        mean_pop = (times_recommended @ popularity).item() / total / max_popularity if total else float("nan")
        out[f"{prefix}avg_popularity@{k}"] = mean_pop
    return out
