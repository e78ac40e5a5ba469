"""Baselines in the same harness and protocol as the models: popularity and item-KNN, scored by full ranking with
the same exclusions and pessimistic ties (``recpipe.metrics.full_ranking_metrics``).

Both are written as "user vectors · item vectors" so that one metric function serves them and the models alike:
popularity is a constant user vector against a one-column item table; item-KNN's user vector is the user's profile
(a bag of known items) and its item table the item–item cosine-similarity matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recpipe.evaluation import item_popularity
from recpipe.metrics import full_ranking_metrics


def _profiles(split, num_items: int) -> sp.csr_matrix:
    rows, cols = [], []
    for r, known in enumerate(split["known_items"]):
        rows += [r] * len(known)
        cols += list(known)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(split), num_items + 1))


def popularity_metrics(train, split, num_items: int, ks=(5, 10, 20), exclude_history=True, prefix="test_") -> dict:
    counts = item_popularity(train, num_items).float()
    users = torch.ones(len(split), 1)
    items = counts.unsqueeze(1)
    exclude = list(split["known_items"]) if exclude_history else None
    targets = torch.as_tensor(list(split["target"]), dtype=torch.long)
    return full_ranking_metrics(users, items, targets, exclude=exclude, ks=ks, item_popularity=counts, prefix=prefix)


def item_knn_metrics(
    train, split, num_items: int, ks=(5, 10, 20), exclude_history=True, neighbours: int = 100, prefix="test_"
) -> dict:
    """Item-KNN: cosine similarity of item columns of the user–item matrix (training interactions), each item
    keeping its ``neighbours`` most similar items; a user scores an item by summing its similarity to their items."""
    rows, cols = [], []
    for u, seq in enumerate(train["item_ids"]):
        rows += [u] * len(seq)
        cols += list(seq)
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(train), num_items + 1))
    x.data[:] = 1.0  # repeated interactions count once
    norms = np.sqrt(np.asarray(x.multiply(x).sum(0))).ravel()
    norms[norms == 0] = 1.0
    sim = (x.T @ x).toarray() / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    if neighbours < num_items:
        cut = -np.partition(-sim, neighbours, axis=1)[:, neighbours : neighbours + 1]
        sim[sim < cut] = 0.0
    users = torch.from_numpy(_profiles(split, num_items).toarray())
    items = torch.from_numpy(sim.T.copy()).float()  # score(u, i) = sum_j profile[u, j] * sim[j, i]
    exclude = list(split["known_items"]) if exclude_history else None
    targets = torch.as_tensor(list(split["target"]), dtype=torch.long)
    counts = torch.as_tensor(np.asarray(x.sum(0)).ravel())
    return full_ranking_metrics(users, items, targets, exclude=exclude, ks=ks, item_popularity=counts, prefix=prefix)
