"""The like-rate features of the pointwise preference task: the inputs of the models' optional wide term and of the
baselines. Both are smoothed log-odds and never see the example's own label (beyond the overall like rate the item
rate is shrunk towards: one number over all training marks, shared by every row).

- ``history_like_logodds``: the example's history marks, ``log((likes + 1) / (dislikes + 1))``.
- ``item_like_logodds``: the candidate's like rate among the training examples' like/dislike marks (their labels
  and their histories' marks, one per user and item), shrunk towards the overall rate (``strength``
  pseudo-marks). A training row's rate counts only the marks of users in other folds (cross-fitting grouped by
  user), so it cannot depend on the row's own label; valid and test rows use the whole training split, and so
  do new rows scored from a checkpoint (``item_like_table`` is saved with it).
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import datasets
import numpy as np
import torch

ITEM_FEATURE = "item_like_logodds"


def history_like_rate(histories) -> np.ndarray:
    """Each history's share of likes, ``(likes + 1) / (marks + 2)``: its log-odds is
    ``log((likes + 1) / (dislikes + 1))``."""
    return np.array([(sum(h) + 1) / (len(h) + 2) for h in histories], dtype=np.float64)


def history_like_logodds(rows: list[dict]) -> torch.Tensor:
    """Each row's history like rate as smoothed log-odds, computed from the history marks only."""
    return torch.from_numpy(logit(history_like_rate([r["history_liked"] for r in rows])).astype(np.float32))


def wide_features(rows: list[dict]) -> dict[str, torch.Tensor]:
    """The wide term's inputs: the history like rate always, the item like rate when the rows carry it."""
    features = {"history_like_logodds": history_like_logodds(rows)}
    if ITEM_FEATURE in rows[0]:
        features[ITEM_FEATURE] = torch.tensor([float(r[ITEM_FEATURE]) for r in rows])
    return features


class _MarkCounter:
    """``{item: [likes, marks]}`` over (user, item, liked) marks, one per (user, item) pair: a user's rating of an
    item is the label of one example and a history mark in that user's later examples, and counts once."""

    def __init__(self):
        self.counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._seen: set[tuple[str, str]] = set()

    def add(self, user: str, item: str, liked) -> None:
        if (user, item) not in self._seen:
            self._seen.add((user, item))
            self.counts[item][0] += int(liked)
            self.counts[item][1] += 1

    def add_row(self, user: str, item: str, label, history_items, history_liked) -> None:
        for h_item, h_liked in zip(history_items, history_liked):
            self.add(user, h_item, h_liked)
        self.add(user, item, label)


def _rows(split):
    return zip(split["user_id"], split["item_id"], split["label"], split["history_item_ids"], split["history_liked"])


def item_like_counts(train) -> tuple[dict[str, list[int]], float]:
    """``{item: [likes, marks]}`` over every like/dislike mark the training examples hold — their candidates'
    labels and their histories' marks, one per (user, item) — and the overall like rate of those marks. The
    histories matter in few-shot splits: 256 examples name ~256 candidates but carry ~2,560 history marks."""
    counter = _MarkCounter()
    for row in _rows(train):
        counter.add_row(*row)
    likes = sum(c[0] for c in counter.counts.values())
    total = sum(c[1] for c in counter.counts.values())
    return dict(counter.counts), likes / total if total else 0.5


def item_like_rate(split, counts: dict, prior: float, strength: float = 5.0) -> np.ndarray:
    """The candidates' like rates from ``counts`` (another split's), shrunk towards ``prior``."""
    likes, total = np.array([counts.get(item, (0, 0)) for item in split["item_id"]], dtype=float).reshape(-1, 2).T
    return (likes + strength * prior) / (total + strength)


def user_fold(user: str, folds: int) -> int:
    """A user's cross-fitting fold: a stable hash, the same in every run and process."""
    return zlib.crc32(user.encode()) % folds


def cross_fitted_item_like_rate(train, prior: float, strength: float = 5.0, folds: int = 5) -> np.ndarray:
    """Each training row's candidate like rate from the marks of the users in the other folds (cross-fitting,
    grouped by user). A row's own label reaches the counts only through its user — as its label and as a history
    mark in the user's later examples — so it never reaches its own rate; and rows of one item in one fold share a
    rate whatever their labels. Leave-one-out would rank a row's own label backwards within its item, and
    time-ordered statistics leave early rows of a few-shot split almost nothing to count."""
    rows = list(_rows(train))
    fold_of = [user_fold(row[0], folds) for row in rows]
    per_fold = [_MarkCounter() for _ in range(folds)]
    for row, fold in zip(rows, fold_of):
        per_fold[fold].add_row(*row)
    # a (user, item) pair lives in one fold, so the other folds' counts are the total minus this fold's
    total: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for counter in per_fold:
        for item, (likes, marks) in counter.counts.items():
            total[item][0] += likes
            total[item][1] += marks
    rates = np.empty(len(rows))
    for k, (row, fold) in enumerate(zip(rows, fold_of)):
        all_likes, all_marks = total[row[1]]
        own_likes, own_marks = per_fold[fold].counts.get(row[1], (0, 0))
        rates[k] = (all_likes - own_likes + strength * prior) / (all_marks - own_marks + strength)
    return rates


def item_like_table(train, strength: float = 5.0) -> dict:
    """What scoring new rows needs, JSON-ready (a checkpoint keeps it in ``ctr_config.json``): the training split's
    ``{item: [likes, marks]}``, its overall like rate and the shrinkage strength."""
    counts, prior = item_like_counts(train)
    return {"counts": counts, "prior": prior, "strength": strength}


def logit(rate: np.ndarray) -> np.ndarray:
    """Log-odds of rates, clipped away from 0 and 1."""
    rate = np.clip(rate, 1e-4, 1 - 1e-4)
    return np.log(rate / (1 - rate))


def _logodds(rate: np.ndarray) -> list[float]:
    return logit(rate).astype(np.float32).tolist()


def item_like_logodds(split, table: dict) -> list[float]:
    """The ``item_like_logodds`` of rows outside the training split (valid, test, new rows at serving time)."""
    return _logodds(item_like_rate(split, table["counts"], table["prior"], table["strength"]))


def add_item_like_logodds(dd: datasets.DatasetDict, strength: float = 5.0) -> tuple[datasets.DatasetDict, dict]:
    """Every split plus the ``item_like_logodds`` column (cross-fitted on ``train``, its full counts elsewhere),
    and the table that scores new rows the way valid/test were scored."""
    table = item_like_table(dd["train"], strength)
    out = {}
    for name, split in dd.items():
        if name == "train":
            values = _logodds(cross_fitted_item_like_rate(split, table["prior"], strength))
        else:
            values = item_like_logodds(split, table)
        out[name] = split.add_column(ITEM_FEATURE, values)
    return datasets.DatasetDict(out), table
