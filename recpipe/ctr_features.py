"""The like-rate features of the pointwise preference task: the inputs of the models' optional wide term and of the
baselines. Both are smoothed log-odds and never see the example's own label.

- ``history_like_logodds``: the example's history marks, ``log((likes + 1) / (dislikes + 1))``.
- ``item_like_logodds``: the candidate's like rate in the training split, shrunk towards the split's overall rate
  (``strength`` pseudo-examples). A training row's rate counts only the training rows before it in time, so it
  cannot depend on the row's own label; valid and test rows use the whole training split, and so do new rows
  scored from a checkpoint (``item_like_table`` is saved with it).
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


def item_like_counts(train) -> tuple[dict[str, list[int]], float]:
    """``{item: [likes, examples]}`` over the training split, and the split's overall like rate."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item, label in zip(train["item_id"], train["label"]):
        counts[item][0] += label
        counts[item][1] += 1
    return dict(counts), float(np.mean(train["label"])) if len(train) else 0.5


def item_like_rate(split, counts: dict, prior: float, strength: float = 5.0) -> np.ndarray:
    """The candidates' like rates from ``counts`` (another split's), shrunk towards ``prior``."""
    likes, total = np.array([counts.get(item, (0, 0)) for item in split["item_id"]], dtype=float).reshape(-1, 2).T
    return (likes + strength * prior) / (total + strength)


def ordered_item_like_rate(train, prior: float, strength: float = 5.0) -> np.ndarray:
    """Each training row's candidate like rate from the training rows strictly before it in time (ordered target
    statistics): independent of the row's own label. Leave-one-out is not: within an item it ranks the row's own
    label backwards, and a few-shot split, where most items occur once, would hand the label over outright."""
    order = np.lexsort((np.arange(len(train)), np.asarray(train["timestamp"])))
    items, labels = list(train["item_id"]), np.asarray(train["label"])
    seen: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    rates = np.empty(len(train))
    for row in order:
        likes, total = seen[items[row]]
        rates[row] = (likes + strength * prior) / (total + strength)
        seen[items[row]][0] += int(labels[row])
        seen[items[row]][1] += 1
    return rates


def item_like_table(train, strength: float = 5.0) -> dict:
    """What scoring new rows needs, JSON-ready (a checkpoint keeps it in ``ctr_config.json``): the training split's
    ``{item: [likes, examples]}``, its overall like rate and the shrinkage strength."""
    counts, prior = item_like_counts(train)
    return {"counts": counts, "prior": prior, "strength": strength}


def _logodds(rate: np.ndarray) -> list[float]:
    rate = np.clip(rate, 1e-4, 1 - 1e-4)
    return np.log(rate / (1 - rate)).astype(np.float32).tolist()


def item_like_logodds(split, table: dict) -> list[float]:
    """The ``item_like_logodds`` of rows outside the training split (valid, test, new rows at serving time)."""
    return _logodds(item_like_rate(split, table["counts"], table["prior"], table["strength"]))


def add_item_like_logodds(dd: datasets.DatasetDict, strength: float = 5.0) -> tuple[datasets.DatasetDict, dict]:
    """Every split plus the ``item_like_logodds`` column (ordered statistics on ``train``, its full counts
    elsewhere), and the table that scores new rows the way valid/test were scored."""
    table = item_like_table(dd["train"], strength)
    out = {}
    for name, split in dd.items():
        if name == "train":
            values = _logodds(ordered_item_like_rate(split, table["prior"], strength))
        else:
            values = item_like_logodds(split, table)
        out[name] = split.add_column(ITEM_FEATURE, values)
    return datasets.DatasetDict(out), table
