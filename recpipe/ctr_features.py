"""The like-rate features of the pointwise preference task: the inputs of the models' optional wide term and of the
baselines. Both are smoothed log-odds and never see the example's own label.

- ``history_like_logodds``: the example's history marks, ``log((likes + 1) / (dislikes + 1))``.
- ``item_like_logodds``: the candidate's like rate in the training split, shrunk towards the split's overall rate
  (``strength`` pseudo-examples). A training row's rate leaves the row itself out of both: otherwise a rarely rated
  item's feature would hold the label it is asked to predict.
"""

from __future__ import annotations

from collections import defaultdict

import datasets
import numpy as np
import torch

ITEM_FEATURE = "item_like_logodds"


def history_like_logodds(rows: list[dict]) -> torch.Tensor:
    """Each row's history like rate as smoothed log-odds, computed from the history marks only."""
    likes = torch.tensor([float(sum(r["history_liked"])) for r in rows])
    dislikes = torch.tensor([float(len(r["history_liked"])) for r in rows]) - likes
    return torch.log((likes + 1) / (dislikes + 1))


def wide_features(rows: list[dict]) -> dict[str, torch.Tensor]:
    """The wide term's inputs: the history like rate always, the item like rate when the rows carry it."""
    features = {"history_like_logodds": history_like_logodds(rows)}
    if ITEM_FEATURE in rows[0]:
        features[ITEM_FEATURE] = torch.tensor([float(r[ITEM_FEATURE]) for r in rows])
    return features


def item_like_counts(train) -> dict[str, list[int]]:
    """``{item: [likes, examples]}`` over the training split; ``None`` holds the split's totals (the prior)."""
    counts: dict = defaultdict(lambda: [0, 0])
    for item, label in zip(train["item_id"], train["label"]):
        for key in (item, None):
            counts[key][0] += label
            counts[key][1] += 1
    return dict(counts)


def item_like_rate(split, counts: dict, strength: float = 5.0, leave_one_out: bool = False) -> np.ndarray:
    """The candidates' like rates shrunk towards the overall rate; ``leave_one_out`` for rows of the split the
    counts came from (the row is taken out of its item's counts and of the overall rate: in a few-shot split where
    most items occur once, an overall rate holding the row's label would give the label away)."""
    all_likes, all_total = counts.get(None, (0, 0))
    rates = []
    for item, label in zip(split["item_id"], split["label"]):
        likes, total = counts.get(item, (0, 0))
        prior_likes, prior_total = all_likes, all_total
        if leave_one_out:
            likes, total = likes - label, total - 1
            prior_likes, prior_total = all_likes - label, all_total - 1
        prior = prior_likes / prior_total if prior_total > 0 else 0.5
        rates.append((likes + strength * prior) / (total + strength))
    return np.array(rates)


def add_item_like_logodds(dd: datasets.DatasetDict, strength: float = 5.0) -> datasets.DatasetDict:
    """Every split plus the ``item_like_logodds`` column, from the ``train`` split's counts (leave-one-out there)."""
    counts = item_like_counts(dd["train"])
    out = {}
    for name, split in dd.items():
        rate = np.clip(item_like_rate(split, counts, strength, leave_one_out=name == "train"), 1e-4, 1 - 1e-4)
        out[name] = split.add_column(ITEM_FEATURE, np.log(rate / (1 - rate)).astype(np.float32).tolist())
    return datasets.DatasetDict(out)
